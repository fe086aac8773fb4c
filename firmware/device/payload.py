# payload.py: the bytes that leave the node (docs/wire/reading-v1.md), built by hand so that
# MicroPython and CPython produce them byte for byte alike, and the HMAC-SHA256 tag over them.
import binascii
import hashlib

import meter

_UNITS_HA = {
    "V": ("voltage", "measurement"),
    "A": ("current", "measurement"),
    "W": ("power", "measurement"),
    "VA": ("apparent_power", "measurement"),
    "var": ("reactive_power", "measurement"),
    "Hz": ("frequency", "measurement"),
    "kWh": ("energy", "total_increasing"),
    "kvarh": (None, "total_increasing"),  # no reactive_energy class before Home Assistant 2025.5
    "": ("power_factor", "measurement"),
    "deg": (None, "measurement"),
}
_UNIT_TEXT = {"deg": "\\u00b0"}  # JSON escape of the degree sign: the payload stays ASCII

# The health message's values offered as diagnostic entities: (key, label, unit, device class, state class)
HEALTH_HA = (
    ("up_s", "Uptime", "s", "duration", "measurement"),
    ("boot", "Boot count", "", None, "total_increasing"),
    ("buf", "Buffered readings", "", None, "measurement"),
    ("drop", "Dropped readings", "", None, "total_increasing"),
    ("err", "Errors", "", None, "total_increasing"),
    ("mem", "Free memory", "B", "data_size", "measurement"),
    ("reset", "Last reset cause", "", None, None),
)


class Hmac:
    """HMAC-SHA256 (RFC 2104) on hashlib.sha256, which both interpreters have (hmac is not on MicroPython)."""

    def __init__(self, key):
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        k = bytearray(64)
        k[: len(key)] = key
        self.ipad = bytes([b ^ 0x36 for b in k])
        self.opad = bytes([b ^ 0x5C for b in k])

    def hexdigest(self, data, tail):
        h = hashlib.sha256(self.ipad)
        h.update(data)
        h.update(tail)
        outer = hashlib.sha256(self.opad)
        outer.update(h.digest())
        return binascii.hexlify(outer.digest())


def topic(prefix, dev, leaf):
    return prefix + "/meter/" + dev + "/" + leaf


def reading(mac, dev, seq, ts, q, model, keys, vals, n):
    """Encode one reading; values that fail meter.is_valid are left out (q says so)."""
    parts = [
        '{"v":1,"dev":"',
        dev,
        '","seq":',
        str(seq),
        ',"ts":',
        str(ts),
        ',"q":',
        str(q),
        ',"m":"',
        model,
        '","r":{',
    ]
    first = True
    for i in range(n):
        name, unit = keys[i][0], keys[i][1]
        if not meter.is_valid(vals, i * 4, unit):
            continue
        text = meter.f32_text(vals, i * 4, meter.UNITS[unit][0])
        parts.append(('"' if first else ',"') + name + '":' + text)
        first = False
    parts.append("}")
    body = "".join(parts).encode()
    tag = mac.hexdigest(body, b"}")
    return body + b',"mac":"' + tag + b'"}'


def _signed(mac, head):
    body = head.encode()
    return body + b',"mac":"' + mac.hexdigest(body, b"}") + b'"}'


def status(mac, dev, boot, n, st):
    """Signed status (docs/wire/control-v1.md): `online` on connect and `offline`, its last will,
    share one (boot, n) mark, so a gateway takes an offline only for the session it ends."""
    return _signed(mac, '{"v":1,"dev":"%s","boot":%d,"n":%d,"st":"%s"' % (dev, boot, n, st))


def session(mac, dev, boot, n):
    """(online, last will) of one connection: both carry its mark."""
    return status(mac, dev, boot, n, "online"), status(mac, dev, boot, n, "offline")


def health(mac, dev, boot, n, reset, up_s, buf, drop, err, mem, fw):
    head = '{"v":1,"dev":"%s","boot":%d,"n":%d,"reset":"%s",' % (dev, boot, n, reset)
    rest = '"up_s":%d,"buf":%d,"drop":%d,"err":%d,"mem":%d,"fw":"%s"' % (up_s, buf, drop, err, mem, fw)
    return _signed(mac, head + rest)


def discovery_topic(dev, name):
    return "homeassistant/sensor/" + dev + "/" + name + "/config"


def discovery(prefix, dev, model, fw, entry):
    """Home Assistant MQTT discovery config for one value (entry = (name, unit, offset, label))."""
    name, unit, label = entry[0], entry[1], entry[3]
    cls, state_class = _UNITS_HA.get(unit, (None, "measurement"))
    tpl = "{{ value_json.r.get('" + name + "') }}"
    return _config(prefix, dev, model, fw, name, label, "reading", tpl, _UNIT_TEXT.get(unit, unit), cls, state_class)


def health_discovery(prefix, dev, model, fw, item):
    """Discovery config of one health value (item from HEALTH_HA), a diagnostic entity."""
    key = item[0]
    tpl = "{{ value_json." + key + " }}"
    return _config(prefix, dev, model, fw, "health_" + key, item[1], "health", tpl, item[2], item[3], item[4])


def _config(prefix, dev, model, fw, obj, label, leaf, tpl, unit, cls, state_class):
    parts = [
        '{"name":"',
        label,
        '","unique_id":"gridpact_',
        dev,
        "_",
        obj,
        '","state_topic":"',
        topic(prefix, dev, leaf),
        '","value_template":"',
        tpl,
        '"',
    ]
    if unit:
        parts.append(',"unit_of_measurement":"' + unit + '"')
    if cls:
        parts.append(',"device_class":"' + cls + '"')
    if state_class:
        parts.append(',"state_class":"' + state_class + '"')
    if leaf == "health":
        parts.append(',"entity_category":"diagnostic"')
    parts += [
        ',"availability_topic":"',
        topic(prefix, dev, "status"),
        '","availability_template":"{{ value_json.st }}"',
        ',"payload_available":"online","payload_not_available":"offline"',
        ',"device":{"identifiers":["gridpact_',
        dev,
        '"],"name":"gridpact ',
        dev,
        '","manufacturer":"gridpact","model":"',
        model,
        '","sw_version":"',
        fw,
        '"}}',
    ]
    return "".join(parts).encode()
