* Dual 10T SRAM cell for signed in-memory MAC (Topkima-Former, S. Dong et al.,
* arXiv 2411.13050, Sec. III-A and Fig. 2(d)).
*
* Each half (L, R) is a 6T core (PU, PD, PG; nodes Q/QB) plus two read stacks:
*   RBL -> access transistor gated by RWL+ or RWL- -> driver gated by a storage node -> VSS.
* Storage nodes only drive gates, so a read never disturbs the stored weight.
*
* Ternary weight (L, R):  +1 = (Q_L=1, Q_R=0),  0 = (0, 0),  -1 = (0, 1).
* The input's sign picks RWL+ (positive) or RWL- (negative); its magnitude is the pulse
* width. A positive product discharges RBL_L, a negative one RBL_R.
*
* Two read wirings are provided (both realise that product table):
*   dual10t_rd    (default) every stack is gated by Q of its half:
*                   L: (RWL+, Q_L) -> RBL_L   (RWL-, Q_L) -> RBL_R
*                   R: (RWL+, Q_R) -> RBL_R   (RWL-, Q_R) -> RBL_L
*                 a zero weight (0, 0) draws no current for either input sign.
*   dual10t_rd_qb each half reads its own bitline, gated by Q and QB:
*                   L: (RWL+, Q_L) -> RBL_L   (RWL-, QB_L) -> RBL_L
*                   R: (RWL+, Q_R) -> RBL_R   (RWL-, QB_R) -> RBL_R
*                 a zero weight with a negative input discharges BOTH lines equally
*                 (a common-mode drop: the difference is still zero, but the common mode
*                 of the column moves with the input pattern).
*
* Storage, two forms:
*   dual10t / dual10t_qb        full 6T cores (set their state with .ic on ql/qr; hold
*                               with wl = 0). Valid for everything, including read
*                               disturb through the storage nodes' coupling and leakage.
*   dual10t_rd / dual10t_rd_qb  the read port alone; the storage nodes are ports, tied to
*                               ideal sources (VDD_SRAM or ground). Much faster. Valid
*                               because the read stacks only load the storage nodes with
*                               a gate: the 6T core holds its level within millivolts
*                               while it is not written. Not valid for studying writes,
*                               data retention or read-port coupling into the core.
*
* Sizes are drawn for a 50 nm minimum length; charact scales every w_*/l_* default
* by the technology's l_min / l_ref (and applies its [sizes.<subckt>] defaults).
* charact: l_ref=50e-9
* Ports: rbl_l rbl_r rwlp rwln (and wl bl_l blb_l bl_r blb_r vdd_sram for the 6T forms,
* or ql qlb qr qrb for the read ports) vss. Devices are the technology-neutral nfet/pfet
* wrappers (w, l in metres). VDD_SRAM (0.5 V in the paper), the RWL level, the precharge
* level and the bitline capacitance are set by the column bench, not here.

* One read stack: RBL -> access (gate rwl) -> driver (gate g) -> VSS.
.subckt rd_stack rbl rwl g vss params: w_ra=120e-9 l_ra=100e-9 w_rd=120e-9 l_rd=1e-6
xa rbl rwl m vss nfet w={w_ra} l={l_ra}
xd m g vss vss nfet w={w_rd} l={l_rd}
.ends rd_stack

* 6T core: cross-coupled inverters on q/qb, pass gates to bl/blb.
.subckt sram6t q qb wl bl blb vdd vss params: w_pu=90e-9 l_pu=50e-9 w_pd=180e-9
+ l_pd=50e-9 w_pg=120e-9 l_pg=50e-9
xpu1 q qb vdd vdd pfet w={w_pu} l={l_pu}
xpd1 q qb vss vss nfet w={w_pd} l={l_pd}
xpu2 qb q vdd vdd pfet w={w_pu} l={l_pu}
xpd2 qb q vss vss nfet w={w_pd} l={l_pd}
xpg1 bl wl q vss nfet w={w_pg} l={l_pg}
xpg2 blb wl qb vss nfet w={w_pg} l={l_pg}
.ends sram6t

* Read port, default wiring: stacks gated by Q only (zero weight draws no current).
.subckt dual10t_rd rbl_l rbl_r rwlp rwln ql qlb qr qrb vss
+ params: w_ra=120e-9 l_ra=100e-9 w_rd=120e-9 l_rd=1e-6
xlp rbl_l rwlp ql vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
xln rbl_r rwln ql vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
xrp rbl_r rwlp qr vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
xrn rbl_l rwln qr vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
.ends dual10t_rd

* Read port, Q/QB wiring: each half reads its own bitline.
.subckt dual10t_rd_qb rbl_l rbl_r rwlp rwln ql qlb qr qrb vss
+ params: w_ra=120e-9 l_ra=100e-9 w_rd=120e-9 l_rd=1e-6
xlp rbl_l rwlp ql vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
xln rbl_l rwln qlb vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
xrp rbl_r rwlp qr vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
xrn rbl_r rwln qrb vss rd_stack w_ra={w_ra} l_ra={l_ra} w_rd={w_rd} l_rd={l_rd}
.ends dual10t_rd_qb

* Full dual 10T cell (two 6T cores + default read port). The spec's [params] of the
* column block set these; the read-port-only forms take the read sizes from them.
.subckt dual10t rbl_l rbl_r rwlp rwln wl bl_l blb_l bl_r blb_r vdd_sram vss
+ params: w_pu=90e-9 l_pu=50e-9 w_pd=180e-9 l_pd=50e-9 w_pg=120e-9 l_pg=50e-9
+ w_ra=120e-9 l_ra=100e-9 w_rd=120e-9 l_rd=1e-6
xl ql qlb wl bl_l blb_l vdd_sram vss sram6t w_pu={w_pu} l_pu={l_pu} w_pd={w_pd}
+ l_pd={l_pd} w_pg={w_pg} l_pg={l_pg}
xr qr qrb wl bl_r blb_r vdd_sram vss sram6t w_pu={w_pu} l_pu={l_pu} w_pd={w_pd}
+ l_pd={l_pd} w_pg={w_pg} l_pg={l_pg}
xrd rbl_l rbl_r rwlp rwln ql qlb qr qrb vss dual10t_rd w_ra={w_ra} l_ra={l_ra}
+ w_rd={w_rd} l_rd={l_rd}
.ends dual10t

* Full dual 10T cell with the Q/QB read wiring.
.subckt dual10t_qb rbl_l rbl_r rwlp rwln wl bl_l blb_l bl_r blb_r vdd_sram vss
+ params: w_pu=90e-9 l_pu=50e-9 w_pd=180e-9 l_pd=50e-9 w_pg=120e-9 l_pg=50e-9
+ w_ra=120e-9 l_ra=100e-9 w_rd=120e-9 l_rd=1e-6
xl ql qlb wl bl_l blb_l vdd_sram vss sram6t w_pu={w_pu} l_pu={l_pu} w_pd={w_pd}
+ l_pd={l_pd} w_pg={w_pg} l_pg={l_pg}
xr qr qrb wl bl_r blb_r vdd_sram vss sram6t w_pu={w_pu} l_pu={l_pu} w_pd={w_pd}
+ l_pd={l_pd} w_pg={w_pg} l_pg={l_pg}
xrd rbl_l rbl_r rwlp rwln ql qlb qr qrb vss dual10t_rd_qb w_ra={w_ra} l_ra={l_ra}
+ w_rd={w_rd} l_rd={l_rd}
.ends dual10t_qb

* Bitline precharge switch: PMOS from vpre to the bitline while pcb is low. Its body is
* at its source (vpre): with the body at vdd and vpre at half of it, the body effect left
* |Vgs| - |Vt| near zero and the switch barely conducted. It stays off once pcb is high
* (Vgs = vdd - vpre > 0). The vdd port is kept for the benches' wiring.
.subckt rbl_pre rbl pcb vpre vdd params: w=2e-6 l=50e-9
xp rbl pcb vpre vpre pfet w={w} l={l}
.ends rbl_pre
