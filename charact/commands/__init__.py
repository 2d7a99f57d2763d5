"""Command-line subcommands, one module per stage."""
