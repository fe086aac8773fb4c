# ntptime.py for the MicroPython (wasm) board: the host clock is already right.
host = "pool.ntp.org"


def settime():
    pass
