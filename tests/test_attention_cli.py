"""``charact accuracy`` without torch: one clear line naming the extra to install."""

from __future__ import annotations

import sys


def test_accuracy_without_torch_says_how_to_install(monkeypatch, capsys, tmp_path):
    from charact.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)  # makes ``import torch`` fail
    assert main(["accuracy", "--quick", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'charact[torch]'" in err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())
