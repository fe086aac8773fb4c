# notary.py: the node's signed meter statement, once per window (docs/wire/statement-v1.md).
# The app feeds it the last good counters and every published reading; at the first poll past a
# window end (clock synced) it signs a statement with the counters as of the last poll before it.
import board
import ecdsa
import keccak
import meter
import statement
from micropython import const

PERIOD_S = const(3600)  # one statement per settlement hour
_PENDING = const(6)  # statements kept in RAM while the broker is away (oldest dropped)
_FRESH_S = const(300)  # counters older than this at the window end are no evidence of it


def wh(text):
    """Exact Wh from the firmware's 3-decimal kWh text ("1234.5" -> 1234500): no float rounding."""
    head, frac = text.split(".")
    return int(head) * 1000 + int((frac + "00")[:3])


class Notary:
    def __init__(self, dev, key_path, keys, period_s=PERIOD_S):
        self.dev = dev
        self.period = period_s
        self.key = None
        try:
            self.key, pub = ecdsa.generate(key_path, board.urandom)
            board.log("device key address %s (register it as this household's meter)" % keccak.address(pub))
        except Exception as e:  # no RNG (wasm) or a damaged key: readings go on, statements do not
            board.log("no device key, no signed statements: %r" % (e,))
        self.offs = [-1, -1]  # offsets of e_imp_kWh, e_exp_kWh in the values buffer
        for i, entry in enumerate(keys):
            if entry[0] == "e_imp_kWh":
                self.offs[0] = 4 * i
            elif entry[0] == "e_exp_kWh":
                self.offs[1] = 4 * i
        self.counters = None
        self.window = statement.Window()
        self.end = 0
        self.pending = []
        self.signed = 0

    def read(self, vals, ts):
        """Remember the counters of a good poll at `ts` (both valid, else the last good ones stay)."""
        imp, exp = self.offs
        if imp < 0 or exp < 0 or not (meter.is_valid(vals, imp, "kWh") and meter.is_valid(vals, exp, "kWh")):
            return
        self.counters = (wh(meter.f32_text(vals, imp, 3)), wh(meter.f32_text(vals, exp, 3)), ts)

    def published(self, msg):
        self.window.add(msg)

    def tick(self, now, synced):
        """Sign the statement of a window that ended by `now`; True when one was made. A failure
        is logged and skips the window: it must never cost the poll its reading."""
        try:
            return self._tick(now, synced)
        except Exception as e:
            board.log_exception(e)
            self.end = (now // self.period + 1) * self.period
            self.window.reset()
            return False

    def _tick(self, now, synced):
        if self.key is None or not synced:
            return False
        if self.end == 0:
            self.end = (now // self.period + 1) * self.period
            return False
        if now < self.end:
            return False
        c = self.counters
        if c is None or c[2] <= self.end - min(_FRESH_S, self.period) or c[2] > self.end:
            self.end = (now // self.period + 1) * self.period  # no fresh counters: no evidence
            self.window.reset()
            return False
        n, rd = self.window.close()
        raw = statement.encode(self.dev, self.end, c[0], c[1], n, rd)
        sig = ecdsa.signature_bytes(ecdsa.sign(statement.digest(raw), self.key))
        if len(self.pending) >= _PENDING:
            self.pending.pop(0)
        self.pending.append(statement.message(raw, sig))
        self.end = (now // self.period + 1) * self.period
        self.signed += 1
        return True
