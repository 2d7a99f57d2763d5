* Gain-cell attention circuits: the gain cell, its signed (differential) pair, a column of
* pairs with pulse-width inputs, the charge-to-pulse readout and the write driver.
*
* After N. Leroux, P.-P. Manea et al., "Analog in-memory computing attention mechanism for
* fast and energy-efficient large language models" (arXiv 2409.19315; Nat. Comput. Sci.
* 2025), Fig. 1 and Methods, "Hardware-based neural network simulations":
* - K and V are stored as capacitor voltages in gain cells (write transistor, storage
*   node with its capacitance, read transistor); the stored value is signed about
*   K_offset = VDD/2 (Eq. 4 is a polynomial in K - K_offset, stored levels 0..0.9 V);
* - the query is a pulse width on the read word line (WLR; the paper applies V_in there
*   for the pulse), so a cell delivers a charge that grows with its stored voltage and
*   the pulse width; the cells of a column add their charges on the read bitline. Here
*   the read word line is the read transistor's source and is pulled from VDD to vss for
*   the pulse (V_in is then the bitline's level above it), see gc_cell;
* - the charge-to-pulse circuit turns the bitline charge into an output pulse whose width
*   grows with the charge and saturates at T_max = 15 ns: Eq. (3), a hard sigmoid, which
*   drives the next array's word lines without an ADC.
* The paper's cells use oxide-semiconductor write transistors for long retention; here
* every device is the technology's silicon nfet/pfet, so retention is that of a silicon
* 2T1C gain cell (subthreshold, junction and gate leakage of the kit's BSIM4 cards).
*
* Signed storage: a weight w is a pair of cells on two bitlines, the "+" cell holding
* v_off + w and the "-" cell v_off - w (the write driver writes the complement); both
* share the read word line, and the readout integrates the difference of their charges.
* The pair's output is odd about v_off, as Eq. (4)'s K - K_offset is.
*
* Sizes are drawn for a 50 nm minimum length; charact scales every w_*/l_* default by the
* technology's l_min / l_ref (and applies its [sizes.<subckt>] defaults).
* charact: l_ref=50e-9
* Devices are the technology-neutral nfet/pfet wrappers (ports d g s b; w, l in metres).

* One 2T1C gain cell. Write: wwl high (boosted above VDD so the NMOS passes the full
* range) copies wbl onto the storage node sn. Read: the read transistor (gate sn) sits
* between the read bitline rbl (the readout's integration node, precharged high) and
* the read word line rwl, which idles at VDD and is pulled to vss for the input's
* duration: only then does the device have a drain-source voltage, and it draws from the
* bitline a current set by v(sn), in saturation, so the bitline's own swing barely
* changes it. Idling rwl high also keeps the read channel off while the cell holds its
* value (gate below source and drain): with rwl idling at vss instead, the inverted read
* channel's gate tunnelling through this kit's 1.1 nm oxide drains a stored high level
* about ten times faster (35 mV in the first 100 ns). A long read device keeps the
* current (and the charge per ns) small and less sensitive to mismatch; c_s adds to the
* read gate's capacitance.
.subckt gc_cell wwl wbl rwl rbl sn vss params: w_wr=90e-9 l_wr=100e-9 w_rd=90e-9
+ l_rd=400e-9 c_s=2e-15
* The storage node is a port so that a bench can probe it or hold it (a leakage bench).
* Zero-volt ammeters split its leakage by path and change nothing else: i(v.<cell>.vmw)
* all that enters the write transistor, i(v.<cell>.vmb) its body current (junction,
* GIDL), i(v.<cell>.vmr) the read transistor's gate current.
vmw sn snw 0
vmr sn snr 0
vmb bw vss 0
xw snw wwl wbl bw nfet w={w_wr} l={l_wr}
xr rwl snr rbl vss nfet w={w_rd} l={l_rd}
cs sn vss {c_s}
.ends gc_cell

* A signed weight: the "+" cell on (wblp, rblp) and the "-" cell on (wbln, rbln), one
* write word line and one read word line; storage nodes snp and snn.
.subckt gc_pair wwl wblp wbln rwl rblp rbln vss params: w_wr=90e-9 l_wr=100e-9
+ w_rd=90e-9 l_rd=400e-9 c_s=2e-15
xp wwl wblp rwl rblp snp vss gc_cell w_wr={w_wr} l_wr={l_wr} w_rd={w_rd} l_rd={l_rd} c_s={c_s}
xn wwl wbln rwl rbln snn vss gc_cell w_wr={w_wr} l_wr={l_wr} w_rd={w_rd} l_rd={l_rd} c_s={c_s}
.ends gc_pair

* A column of four signed weights (rows 0-3) on one bitline pair: one write bitline pair
* (wblp, wbln) and one read bitline pair (rblp, rbln) shared by the rows, a write and a
* read word line per row. A row's input is the width of its rwl pulse; the charges of the
* rows add on the read bitlines (the dot product). c_rbl is the wiring of the read
* bitlines, c_wbl that of the write bitlines.
.subckt gc_column wwl0 wwl1 wwl2 wwl3 wblp wbln rwl0 rwl1 rwl2 rwl3 rblp rbln vss
+ params: w_wr=90e-9 l_wr=100e-9 w_rd=90e-9 l_rd=400e-9 c_s=2e-15 c_rbl=5e-15
+ c_wbl=5e-15
x0 wwl0 wblp wbln rwl0 rblp rbln vss gc_pair w_wr={w_wr} l_wr={l_wr} w_rd={w_rd}
+ l_rd={l_rd} c_s={c_s}
x1 wwl1 wblp wbln rwl1 rblp rbln vss gc_pair w_wr={w_wr} l_wr={l_wr} w_rd={w_rd}
+ l_rd={l_rd} c_s={c_s}
x2 wwl2 wblp wbln rwl2 rblp rbln vss gc_pair w_wr={w_wr} l_wr={l_wr} w_rd={w_rd}
+ l_rd={l_rd} c_s={c_s}
x3 wwl3 wblp wbln rwl3 rblp rbln vss gc_pair w_wr={w_wr} l_wr={l_wr} w_rd={w_rd}
+ l_rd={l_rd} c_s={c_s}
crblp rblp vss {c_rbl}
crbln rbln vss {c_rbl}
cwblp wblp vss {c_wbl}
cwbln wbln vss {c_wbl}
.ends gc_column

* Charge-to-pulse readout (Eq. 3). Phases, driven by the bench:
* 1. reset (rst high): both integration nodes inp, inn (the read bitlines) to the
*    precharge level vpre;
* 2. integrate (rst low): the column's cells draw Q+ from inp and Q- from inn (c_int plus
*    the bitlines' own capacitance), so inp - inn = -(Q+ - Q-) / C;
* 3. convert (conv high for T_max): a mirrored reference current (the bench pushes i_ref
*    into the diode node ibn) discharges inn; the comparator holds out high while
*    inn > inp, so the pulse width is (Q+ - Q-) / i_ref up to T_max: no pulse for a
*    negative difference, T_max beyond saturation, a hard sigmoid of the signed charge.
* The comparator is a two-stage amplifier: an NMOS pair (the nodes sit between vpre and
* vpre - S_sat / c_int, high in the supply) with a PMOS mirror load, then a PMOS common
* source stage whose NMOS sink is mirrored from the same reference; sized 2:1 against the
* load, it switches exactly at the first stage's balance point, so the comparator has no
* systematic offset. A NAND with conv bounds the pulse to the window. Mismatch of the
* input pair and its load is the readout's charge offset (about c_int x V_os); mismatch
* of the discharge mirror its gain error. The comparator's delay (1-2 ns at i_ref =
* 10 uA) lengthens every pulse: a pulse, once there, is at least that wide.
.subckt gc_readout inp inn rst conv ibn vpre out vdd vss params: c_int=1e-12 w_in=2e-6
+ l_in=400e-9 w_ld=2e-6 l_ld=500e-9 w_mir=1e-6 l_mir=1e-6 w_rst=1e-6 w_sw=0.4e-6
+ l_sw=50e-9 w_inv_n=0.2e-6 w_inv_p=0.4e-6 l_logic=50e-9
cip inp vss {c_int}
cin inn vss {c_int}
* reset switches (PMOS to vpre, on while rst is high)
xrsp rstb rst vdd vdd pfet w={w_inv_p} l={l_logic}
xrsn rstb rst vss vss nfet w={w_inv_n} l={l_logic}
xrp inp rstb vpre vdd pfet w={w_rst} l={l_sw}
xrn inn rstb vpre vdd pfet w={w_rst} l={l_sw}
* reference: diode-connected NMOS, mirrored out of inn through a switch closed by conv
xref ibn ibn vss vss nfet w={w_mir} l={l_mir}
xmir mid ibn vss vss nfet w={w_mir} l={l_mir}
xswc inn conv mid vss nfet w={w_sw} l={l_sw}
* first stage: NMOS pair (tail 4 x i_ref), PMOS mirror load; o1 falls when inn > inp
xtail tail ibn vss vss nfet w={4*w_mir} l={l_mir}
xm1 d1 inp tail vss nfet w={w_in} l={l_in}
xm2 o1 inn tail vss nfet w={w_in} l={l_in}
xl1 d1 d1 vdd vdd pfet w={w_ld} l={l_ld}
xl2 o1 d1 vdd vdd pfet w={w_ld} l={l_ld}
* second stage: PMOS common source, NMOS sink 4 x i_ref; o2 rises when inn > inp
xs2p o2 o1 vdd vdd pfet w={2*w_ld} l={l_ld}
xs2n o2 ibn vss vss nfet w={4*w_mir} l={l_mir}
* out = o2 and conv
xna outb o2 conv vdd vss gc_nand2 w_n={w_inv_n} w_p={w_inv_p} l={l_logic}
xop out outb vdd vdd pfet w={w_inv_p} l={l_logic}
xon out outb vss vss nfet w={w_inv_n} l={l_logic}
.ends gc_readout

* Write driver of one write bitline: a transmission gate passes the level of the DAC line
* vdata onto wbl while en is high; with en low a weak NMOS holds wbl at vss (the idle
* write bitline, the worst case for a cell holding a high level).
.subckt gc_write_driver vdata en wbl vdd vss params: w_tg_n=0.4e-6 w_tg_p=0.8e-6
+ w_hold=0.1e-6 w_inv_n=0.2e-6 w_inv_p=0.4e-6 l_logic=50e-9
xinvp enb en vdd vdd pfet w={w_inv_p} l={l_logic}
xinvn enb en vss vss nfet w={w_inv_n} l={l_logic}
xtgn wbl en vdata vss nfet w={w_tg_n} l={l_logic}
xtgp wbl enb vdata vdd pfet w={w_tg_p} l={l_logic}
xhold wbl enb vss vss nfet w={w_hold} l={l_logic}
.ends gc_write_driver

* Two-input NAND: y = not(a and b)
.subckt gc_nand2 y a b vdd vss params: w_n=0.4e-6 w_p=0.4e-6 l=50e-9
xp1 y a vdd vdd pfet w={w_p} l={l}
xp2 y b vdd vdd pfet w={w_p} l={l}
xn1 y a m vss nfet w={w_n} l={l}
xn2 m b vss vss nfet w={w_n} l={l}
.ends gc_nand2
