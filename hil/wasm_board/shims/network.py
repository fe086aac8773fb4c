# network for the wasm virtual board: the WLAN is always joined (the host's TCP is the network).
STA_IF = 0
AP_IF = 1


class WLAN:
    def __init__(self, iface=STA_IF):
        self._active = False
        self._up = False

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def connect(self, ssid, password):
        self._up = True

    def isconnected(self):
        return self._up

    def disconnect(self):
        self._up = False
