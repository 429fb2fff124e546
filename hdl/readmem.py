"""Turn the ROM initialisers Amaranth writes inline into ``$readmemh`` of hex files.

Amaranth's Verilog backend (Yosys ``write_verilog``) writes a `Memory`'s
``init`` as one assignment per word in an ``initial`` block::

    reg [3:0] memory [12287:0];
    initial begin
      memory[0] = 4'hb;
      ...
    end

For a model's code ROMs that is megabytes of Verilog that tools parse slowly
(a 3-layer d=96 model: 8.9 MB that Yosys did not finish reading in 13 minutes)
and that has to be regenerated to change a weight. `readmem_roms` replaces
each named ROM's block by ``initial $readmemh("<file>", <memory>);`` after
checking that the block holds exactly the words of the file, word for word,
so the replacement cannot change what the design computes. Any block it
cannot read, or whose words differ, is an error, never a silent rewrite.

Both Yosys and Verilator resolve the file name at elaboration/run time:
Verilator relative to the simulation's working directory, Yosys relative to
the working directory and then to the Verilog file's own folder.
"""

import re
from dataclasses import dataclass

__all__ = ["RomFile", "readmem_roms", "ReadmemError"]


class ReadmemError(ValueError):
    """A ROM initialiser that is missing, unreadable, or not the hex file's words."""


@dataclass(frozen=True)
class RomFile:
    """One ROM to read from a hex file.

    Attributes
    ----------
    module : str
        Verilog module holding the memory, as Amaranth names it
        (``potgen_engine.code_store_0``; without the escaping backslash).
    memory : str
        The memory's name in that module.
    file : str
        The hex file name written into ``$readmemh``.
    words : sequence of int
        The file's words, address order: what the initialiser must hold.
    width : int
        Word width in bits.
    """

    module: str
    memory: str
    file: str
    words: tuple
    width: int


_NAME = r"(?:\\\S+\s|[A-Za-z_][\w$]*)"
_MODULE = re.compile(rf"^module\s+({_NAME})\s*\(.*?^endmodule\b", re.S | re.M)
_ASSIGN = re.compile(r"\s*(\\\S+\s|[A-Za-z_][\w$]*)\s*\[\s*(\d+)\s*\]\s*=\s*(\d+)'([hbd])([0-9a-fA-F_]+)\s*;\s*")
_BASES = {"h": 16, "b": 2, "d": 10}


def _plain(name):
    """A Verilog identifier without the escaping backslash and trailing space."""
    return name[1:].rstrip() if name.startswith("\\") else name


def _init_block(body, memory):
    """The ``initial`` block after memory `memory`'s declaration in the module text `body`.

    Returns ``(start, end, name, words, width, depth)``: the block's span in
    `body`, the memory's identifier as written, ``{address: word}`` and the
    declared shape.
    """
    declarations = re.finditer(rf"^[ \t]*reg\s+\[\s*(\d+)\s*:\s*0\s*\]\s+({_NAME})\s*\[\s*(\d+)\s*:\s*0\s*\]\s*;[ \t]*\n",
                               body, re.M)
    match = next((m for m in declarations if _plain(m[2]) == memory), None)
    if match is None:
        raise ReadmemError(f"no memory {memory!r}")
    start = match.end()
    opening = re.compile(r"[ \t]*initial begin[ \t]*\n").match(body, start)
    closing = re.compile(r"^[ \t]*end[ \t]*\n", re.M).search(body, start)
    if opening is None or closing is None:
        raise ReadmemError(f"memory {memory!r} has no initial block after its declaration")
    words = {}
    for line in body[opening.end():closing.start()].splitlines():
        assign = _ASSIGN.fullmatch(line)
        if assign is None or _plain(assign[1]) != memory:
            raise ReadmemError(f"memory {memory!r}: cannot read the initialiser line {line.strip()!r}")
        words[int(assign[2])] = int(assign[5].replace("_", ""), _BASES[assign[4]])
    return start, closing.end(), match[2].rstrip(), words, int(match[1]) + 1, int(match[3]) + 1


def readmem_roms(verilog, roms):
    """`verilog` with the initialiser of every `RomFile` in `roms` replaced by ``$readmemh`` of its file.

    Raises
    ------
    ReadmemError
        A module or memory is missing, its declaration is not ``width`` x
        ``len(words)``, or its initialiser is not exactly `words`.
    """
    by_module = {}
    for rom in roms:
        by_module.setdefault(rom.module, []).append(rom)
    pieces, done, last = [], set(), 0
    for module in _MODULE.finditer(verilog):
        name = _plain(module[1])
        if name not in by_module:
            continue
        body = module[0]
        edits = []
        for rom in by_module[name]:
            try:
                start, end, identifier, words, width, depth = _init_block(body, rom.memory)
            except ReadmemError as error:
                raise ReadmemError(f"module {name}: {error}") from None
            if (width, depth) != (rom.width, len(rom.words)):
                raise ReadmemError(f"module {name}: memory {rom.memory!r} is {width} x {depth}, but {rom.file} "
                                   f"holds {len(rom.words)} words of {rom.width} bits")
            expected = dict(enumerate(int(w) for w in rom.words))
            if words != expected:
                first = next(a for a in range(depth) if words.get(a) != expected.get(a))
                raise ReadmemError(f"module {name}: memory {rom.memory!r} word {first} is {words.get(first)}, "
                                   f"but {rom.file} holds {expected.get(first)}")
            edits.append((start, end, f'  initial $readmemh("{rom.file}", {identifier} );\n'))
            done.add(rom)
        for start, end, text in sorted(edits, reverse=True):
            body = body[:start] + text + body[end:]
        pieces += [verilog[last:module.start()], body]
        last = module.end()
    missing = [rom for rom in roms if rom not in done]
    if missing:
        raise ReadmemError(f"no module {missing[0].module!r} in the Verilog (for {missing[0].file})")
    return "".join(pieces) + verilog[last:]
