"""A session with a board: its codes loaded, its layers at the host's call.

`BoardSession.open(port, integer_model)` identifies the board, checks that its
bitstream holds `integer_model`'s layers (the layout digest), loads every code
bank over the link and returns a session whose ``accumulate(name, x_int)``
gives the accumulators of layer `name` for int activations (T, K): the
``accumulate`` of `golden.integer_model.IntegerModel.offloaded_linear`, so the
whole model runs with its linear layers on the board (`boards.generate`).
"""

import numpy as np

from .protocol import Client, ProtocolError, code_banks, layout_digest

__all__ = ["BoardSession", "open_serial"]

DEFAULT_BAUD = 3_000_000


def open_serial(name, *, baud, timeout):
    """Serial port `name` at `baud`, reads giving up after `timeout` seconds, its input buffer emptied;
    ValueError (one line) without pyserial or when it does not open."""
    try:
        import serial
    except ImportError:
        raise ValueError("A board session needs pyserial: pip install pyserial") from None
    try:
        port = serial.Serial(name, baud, timeout=timeout)
    except serial.SerialException as error:
        raise ValueError(f"Cannot open {name}: {error}") from None
    port.reset_input_buffer()
    return port


class BoardSession:
    """The host's end of a loaded board; use `open`.

    Parameters
    ----------
    client : boards.protocol.Client
        Already identified.
    layout : golden.rom_layout.RomLayout
        The layout the board holds (its digest checked).
    close : callable
        Closes the port.
    """

    def __init__(self, client, layout, close=lambda: None):
        self.client = client
        self.identity = client.identity
        self.layout = layout
        self._index = {layer.name: i for i, layer in enumerate(layout.layers)}
        self._n = {layer.name: layer.n for layer in layout.layers}
        self._selected = None
        self._close = close

    @classmethod
    def open(cls, port, integer_model, *, baud=DEFAULT_BAUD, timeout=2.0, progress=None):
        """Open serial port `port` (a name, or an object with read/write), check the board, load the codes."""
        if isinstance(port, str):
            port = open_serial(port, baud=baud, timeout=timeout)
        close = getattr(port, "close", lambda: None)
        try:
            client = Client(port)
            identity = client.identify()
            layout = integer_model.layout(identity.columns)
            if layout_digest(layout) != identity.digest or identity.act_bits != integer_model.act_bits \
                    or identity.bits != (integer_model.bits or 0):
                raise ProtocolError(
                    f"The board holds another model (its {identity.bits or 'INT8'}-bit, {identity.columns}-column "
                    f"build has digest {identity.digest.hex()}, this model {layout_digest(layout).hex()}); "
                    f"flash the bitstream built from this checkpoint")
            client.load_codes(code_banks(layout, identity.columns_per_word), progress=progress)
        except BaseException:
            close()
            raise
        return cls(client, layout, close)

    def accumulate(self, name, x_int):
        """Accumulators (T, N) of layer `name` for int activations (T, K), `max_tokens` per RUN."""
        if name not in self._index:
            raise KeyError(f"The board holds no layer {name!r}")
        if self._selected != name:
            self.client.select(self._index[name])
            self._selected = name
        x = np.asarray(x_int).reshape(-1, self.layout.layer(name).k)
        step = self.identity.max_tokens
        return np.concatenate([self.client.run(x[i:i + step], self._n[name], self.identity.act_bits,
                                               self.identity.acc_bits) for i in range(0, len(x), step)])

    def close(self):
        self._close()
