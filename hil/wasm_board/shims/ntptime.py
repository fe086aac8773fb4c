# ntptime for the wasm virtual board: the interpreter's clock already is the host's Unix time.
host = "pool.ntp.org"


def settime():
    pass
