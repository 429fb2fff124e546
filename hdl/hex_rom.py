"""A code ROM whose words the Verilog reads from a hex file (``$readmemh``), not from the Amaranth design."""

from amaranth import ClockSignal, Instance, Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

__all__ = ["HexFileROM", "hex_file_code_store", "HEX_ROM_MODULE", "hex_rom_verilog"]

#: Name of the Verilog module every `HexFileROM` instantiates.
HEX_ROM_MODULE = "potgen_hex_rom"


def hex_rom_verilog():
    """The Verilog of `HEX_ROM_MODULE`: a synchronous-read ROM (one cycle, the output holds while ``en`` is
    low) of ``DEPTH`` words of ``WIDTH`` bits, read at elaboration from the hex file ``FILE`` (one word a
    line; the module's default, no file, is only there for tools that elaborate it unparameterized).
    Yosys maps it to block RAM like any initialised memory; Verilator reads the file at start."""
    return f"""
(* generator = "potgen hdl.hex_rom" *)
module {HEX_ROM_MODULE} #(
  parameter WIDTH = 4,
  parameter DEPTH = 1,
  parameter ADDR_WIDTH = 1,
  parameter FILE = ""
) (
  input clk,
  input en,
  input [ADDR_WIDTH-1:0] addr,
  output reg [WIDTH-1:0] data
);
  reg [WIDTH-1:0] memory [0:DEPTH-1];
  generate if (FILE != "") begin : load
    initial $readmemh(FILE, memory);
  end endgenerate
  always @(posedge clk) begin
    if (en) begin
      data <= memory[addr];
    end
  end
endmodule
"""


class HexFileROM(wiring.Component):
    """A read-only memory of `depth` words of `width` bits that holds the contents of the hex file `file`.

    The Amaranth design never holds the words: it instantiates `HEX_ROM_MODULE`
    (`hex_rom_verilog`, which the emitted Verilog must carry), so a model of
    millions of weights converts in seconds, and swapping the hex file swaps
    the weights without regenerating the Verilog. The read port behaves as
    `hdl.code_store.CodeStore`'s: one cycle of latency, data held while
    ``read.en`` is low. It cannot be simulated by Amaranth's simulator (it is
    an `Instance`); simulate the emitted Verilog.

    Parameters
    ----------
    file : str
        The hex file's name as ``$readmemh`` will open it (relative to the
        simulator's working directory, or to the Verilog's folder for Yosys).
    depth : int
    width : int

    Members
    -------
    read : ``Out(memory.ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(width)))``

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong type or out of range; the message repeats it.
    """

    def __init__(self, *, file, depth, width):
        if not isinstance(file, str) or not file or '"' in file or "\\" in file:
            raise ValueError(f"File must be a non-empty file name without quotes or backslashes, not {file!r}")
        for name, value in (("Depth", depth), ("Width", width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._file, self._depth, self._width = file, depth, width
        super().__init__({"read": Out(memory.ReadPort.Signature(addr_width=self.addr_width,
                                                                shape=unsigned(width)))})

    @property
    def file(self):
        return self._file

    @property
    def depth(self):
        return self._depth

    @property
    def width(self):
        return self._width

    @property
    def addr_width(self):
        return max(1, ceil_log2(self._depth))

    @property
    def latency(self):
        """Read latency in cycles (1)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = Instance(HEX_ROM_MODULE, p_WIDTH=self._width, p_DEPTH=self._depth,
                                    p_ADDR_WIDTH=self.addr_width, p_FILE=self._file, i_clk=ClockSignal(),
                                    i_en=self.read.en, i_addr=self.read.addr, o_data=self.read.data)
        return m


def hex_file_code_store(first_column, columns_per_word, words, word_width):
    """The ``code_store`` of an `hdl.engine.Engine` whose code ROMs are hex files: the group of columns
    from `first_column` reads ``code_store_<first_column // columns_per_word>.hex``."""
    return HexFileROM(file=f"code_store_{first_column // columns_per_word}.hex", depth=len(words),
                      width=word_width)
