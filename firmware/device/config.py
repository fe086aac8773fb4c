# config.py: read and check config.json at boot. Every problem is reported at once, with the
# field's name, so a user at the serial console can fix the file in one go.
import json

MODELS = ("sdm120", "sdm630")
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400)
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-"
_TOPIC_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/"
_HEX = "0123456789abcdefABCDEF"

# (section, field, default) applied before checking; None means required
DEFAULTS = (
    ("wifi", "ssid", None),
    ("wifi", "password", ""),
    ("broker", "host", None),
    ("broker", "port", 1883),
    ("broker", "user", ""),
    ("broker", "password", ""),
    ("broker", "tls", False),
    ("broker", "ca", ""),
    ("broker", "keepalive_s", 60),
    ("broker", "backoff_max_s", 30),
    ("meter", "model", "sdm120"),
    ("meter", "unit_id", 1),
    ("meter", "baud", 9600),
    ("meter", "parity", "N"),
    ("meter", "timeout_ms", 500),
    ("pins", "uart", -1),
    ("pins", "tx", -1),
    ("pins", "rx", -1),
    ("pins", "de", -1),
)
TOP = (
    ("device_id", None),
    ("hmac_key", None),
    ("poll_s", 10),
    ("prefix", "gridpact"),
    ("buffer_kb", 256),
    ("ntp_host", "pool.ntp.org"),
    ("health_s", 60),
    ("ntp_hold_s", 60),
)


def _chars(s, allowed):
    for c in s:
        if c not in allowed:
            return False
    return True


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def validate(raw):
    """(config with defaults filled in, list of error strings). An empty list means usable."""
    errors = []
    if not isinstance(raw, dict):
        return {}, ["config: the file must hold a JSON object"]
    cfg = {}
    for sec, field, default in DEFAULTS:
        src = raw.get(sec, {})
        if not isinstance(src, dict):
            errors.append("%s: must be an object" % sec)
            src = {}
        dst = cfg.setdefault(sec, {})
        v = src.get(field, default)
        if v is None:
            errors.append("%s.%s: required" % (sec, field))
        dst[field] = v
    for field, default in TOP:
        v = raw.get(field, default)
        if v is None:
            errors.append("%s: required" % field)
        cfg[field] = v
    w, b, m, p = cfg["wifi"], cfg["broker"], cfg["meter"], cfg["pins"]
    if not isinstance(w["ssid"], str) or not 1 <= len(w["ssid"]) <= 32:
        errors.append("wifi.ssid: a string of 1..32 characters")
    if not isinstance(w["password"], str) or len(w["password"]) > 63:
        errors.append("wifi.password: a string of at most 63 characters")
    if not isinstance(b["host"], str) or not b["host"]:
        errors.append("broker.host: a host name or address")
    if not _int(b["port"]) or not 1 <= b["port"] <= 65535:
        errors.append("broker.port: an integer 1..65535")
    for f in ("user", "password", "ca"):
        if not isinstance(b[f], str):
            errors.append("broker.%s: a string" % f)
    if not isinstance(b["tls"], bool):
        errors.append("broker.tls: true or false")
    if not _int(b["keepalive_s"]) or not 10 <= b["keepalive_s"] <= 600:
        errors.append("broker.keepalive_s: an integer 10..600")
    if not _int(b["backoff_max_s"]) or not 1 <= b["backoff_max_s"] <= 3600:
        errors.append("broker.backoff_max_s: an integer 1..3600")
    if m["model"] not in MODELS:
        errors.append("meter.model: one of " + ", ".join(MODELS))
    if not _int(m["unit_id"]) or not 1 <= m["unit_id"] <= 247:
        errors.append("meter.unit_id: an integer 1..247")
    if m["baud"] not in BAUDS or not _int(m["baud"]):
        errors.append("meter.baud: one of " + ", ".join([str(x) for x in BAUDS]))
    if m["parity"] not in ("N", "E", "O"):
        errors.append("meter.parity: N, E or O")
    if not _int(m["timeout_ms"]) or not 50 <= m["timeout_ms"] <= 60000:
        errors.append("meter.timeout_ms: an integer 50..60000")
    for f in ("uart", "tx", "rx", "de"):
        if not _int(p[f]) or not -1 <= p[f] <= 48:
            errors.append("pins.%s: an integer pin number, or -1 for the board default" % f)
    dev = cfg["device_id"]
    if not isinstance(dev, str) or not 1 <= len(dev) <= 32 or not _chars(dev, _ID_CHARS):
        errors.append("device_id: 1..32 characters of a-z, 0-9 and -")
    key = cfg["hmac_key"]
    if not isinstance(key, str) or len(key) % 2 or not 32 <= len(key) <= 128 or not _chars(key, _HEX):
        errors.append("hmac_key: 32..128 hex digits (16..64 bytes)")
    if not _int(cfg["poll_s"]) or not 1 <= cfg["poll_s"] <= 3600:
        errors.append("poll_s: an integer 1..3600")
    pre = cfg["prefix"]
    if not isinstance(pre, str) or not 1 <= len(pre) <= 64 or not _chars(pre, _TOPIC_CHARS):
        errors.append("prefix: 1..64 characters of letters, digits, _ - /")
    if not _int(cfg["buffer_kb"]) or not 4 <= cfg["buffer_kb"] <= 4096:
        errors.append("buffer_kb: an integer 4..4096")
    if not isinstance(cfg["ntp_host"], str) or not cfg["ntp_host"]:
        errors.append("ntp_host: a host name")
    for f, lo, hi in (("health_s", 5, 86400), ("ntp_hold_s", 0, 86400)):
        if not _int(cfg[f]) or not lo <= cfg[f] <= hi:
            errors.append("%s: an integer %d..%d" % (f, lo, hi))
    for k in raw:
        if k not in cfg:
            errors.append("%s: unknown setting" % k)
    return cfg, errors


def load(path):
    """Parse and validate; (cfg, errors) with the parse error as the one error if it is not JSON."""
    try:
        with open(path) as f:
            raw = json.loads(f.read())
    except OSError:
        return {}, ["%s: cannot be read (copy config.example.json there)" % path]
    except ValueError as e:
        return {}, ["%s: not valid JSON (%s)" % (path, e)]
    return validate(raw)
