# network.py for the MicroPython (wasm) board: a WLAN that is always joined.
STA_IF = 0


class WLAN:
    def __init__(self, iface=0):
        self.on = False

    def active(self, on=None):
        if on is not None:
            self.on = on
        return self.on

    def connect(self, ssid, key=""):
        pass

    def isconnected(self):
        return self.on
