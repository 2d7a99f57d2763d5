* StrongARM latch comparator with PMOS input pair and NOR SR latch.
*
* The Topkima-Former column (S. Dong et al., arXiv 2411.13050, Fig. 2(c)) compares the
* MAC bitline RBL_L with the replica-ramp bitline RBL_R once per 4 ns ADC clock. Both
* lines are precharged to VDD_SRAM = 0.5 V and only fall, so the comparator sees a common
* mode at or below 0.5 V: a PMOS input pair keeps its overdrive there, where an NMOS pair
* would starve.
*
* Phases: clk low = reset (nodes p, q, outp, outn pulled to ground by NMOS switches);
* clk high = evaluate (PMOS tail on, the pair steers current, the cross-coupled pair
* regenerates). A lower gate voltage on a PMOS input means more current: the device gated
* by inn charges q, which feeds outp, so outp wins when inn is the lower input (inp > inn).
* Each output drives one inverter, so both see the same load whatever the latched state
* (an SR gate driven directly loads outp and outn unequally depending on its state, which
* shows up as a hysteresis-like offset). The NAND SR latch on the inverted outputs holds
* the decision through reset: dout = 1 after a cycle with inp > inn.
*
* Sizes are drawn for a 50 nm minimum length; charact scales every w_*/l_* default
* by the technology's l_min / l_ref (and applies its [sizes.<subckt>] defaults).
* charact: l_ref=50e-9
* Ports: inp inn clk dout doutb outp outn vdd vss
* Devices are the technology-neutral nfet/pfet wrappers (w, l in metres).
.subckt strongarm_sa inp inn clk dout doutb outp outn vdd vss
+ params: w_tail=2e-6 l_tail=50e-9 w_in=1e-6 l_in=100e-9 w_cp=0.5e-6 w_cn=0.5e-6
+ l_latch=50e-9 w_rst=0.3e-6 w_inv_n=0.2e-6 w_inv_p=0.4e-6 w_sr_n=0.4e-6 w_sr_p=0.4e-6
+ l_logic=50e-9 w_buf_n=0.2e-6 w_buf_p=0.4e-6
* clock inverter: the PMOS tail conducts while clk is high
xinvp clkb clk vdd vdd pfet w={w_inv_p} l={l_logic}
xinvn clkb clk vss vss nfet w={w_inv_n} l={l_logic}
* tail and input pair (bodies to vdd)
xtail tail clkb vdd vdd pfet w={w_tail} l={l_tail}
xgn q inn tail vdd pfet w={w_in} l={l_in}
xgp p inp tail vdd pfet w={w_in} l={l_in}
* regenerative latch: PMOS from p/q to the outputs, NMOS from the outputs to vss
xcp1 outn outp p vdd pfet w={w_cp} l={l_latch}
xcp2 outp outn q vdd pfet w={w_cp} l={l_latch}
xcn1 outn outp vss vss nfet w={w_cn} l={l_latch}
xcn2 outp outn vss vss nfet w={w_cn} l={l_latch}
* reset switches
xrp p clkb vss vss nfet w={w_rst} l={l_logic}
xrq q clkb vss vss nfet w={w_rst} l={l_logic}
xro1 outp clkb vss vss nfet w={w_rst} l={l_logic}
xro2 outn clkb vss vss nfet w={w_rst} l={l_logic}
* output buffers and NAND SR latch: set by outp, reset by outn
xbpp sb outp vdd vdd pfet w={w_buf_p} l={l_logic}
xbpn sb outp vss vss nfet w={w_buf_n} l={l_logic}
xbnp rb outn vdd vdd pfet w={w_buf_p} l={l_logic}
xbnn rb outn vss vss nfet w={w_buf_n} l={l_logic}
xs1 dout sb doutb vdd vss nand2 w_n={w_sr_n} w_p={w_sr_p} l={l_logic}
xs2 doutb rb dout vdd vss nand2 w_n={w_sr_n} w_p={w_sr_p} l={l_logic}
.ends strongarm_sa

* Two-input NAND: y = not(a and b)
.subckt nand2 y a b vdd vss params: w_n=0.4e-6 w_p=0.4e-6 l=50e-9
xp1 y a vdd vdd pfet w={w_p} l={l}
xp2 y b vdd vdd pfet w={w_p} l={l}
xn1 y a m vss nfet w={w_n} l={l}
xn2 m b vss vss nfet w={w_n} l={l}
.ends nand2
