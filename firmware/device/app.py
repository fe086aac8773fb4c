# app.py: the meter node's main loop: poll the meter, publish or buffer, keep MQTT, NTP and the
# watchdog going. Each task catches and counts its own exceptions; the watchdog is fed only
# while every task keeps reporting in.
import asyncio
import binascii
import gc
import time

from micropython import const

import board
import config
import maps
import meter
import modbus
import mqtt
import notary
import payload
import ringbuf

FW = "0.1.0"
_RAM_SLOTS = const(4)
_STALE_MS = const(120000)
_IDLE_MS = const(10000)  # the publishing task's longest sleep with nothing to send
_FEED_MS = const(2000)  # watchdog feeds: a quarter of board.WDT_MS
_LINK_CHECK_MS = const(5000)  # while connected: the connection task's pace (a drop wakes it at once)


class App:
    def __init__(self, cfg, root, boot, reset, uart, de):
        self.cfg = cfg
        self.dev = cfg["device_id"]
        self.model = cfg["meter"]["model"]
        self.model_idx = maps.MODELS.index(self.model)
        self.fc, self.start, self.count, self.keys = maps.MAPS[self.model]
        self.vals = bytearray(64)
        self.rec = bytearray(ringbuf.REC)
        self.ram = [bytearray(ringbuf.REC) for _ in range(_RAM_SLOTS)]
        self.ram_head = 0
        self.ram_n = 0
        self.mac = payload.Hmac(binascii.unhexlify(cfg["hmac_key"]))
        slots = max(16, cfg["buffer_kb"] * 1024 // ringbuf.REC)
        self.ring = ringbuf.Ring(root + "ring.dat", slots)
        self.seq = ringbuf.SeqCounter(root + "seq.dat", self.ring.max_seq + 1)
        self.boot = boot
        self.reset = reset
        self.errors = self.polls = self.faults = self.offset = self.last_seq = 0
        self.ctl_n = 0  # marks status and health within this boot: (boot, n) only grows
        self.online = b""
        self.synced = False
        self.t0 = time.ticks_ms()
        m = cfg["meter"]
        self.unit = m["unit_id"]
        self.master = modbus.Master(uart, de, m["baud"], m["timeout_ms"])
        self.tracker = meter.Tracker()
        b = cfg["broker"]
        pre = cfg["prefix"]
        self.t_reading = payload.topic(pre, self.dev, "reading")
        self.t_status = payload.topic(pre, self.dev, "status")
        self.t_health = payload.topic(pre, self.dev, "health")
        self.t_statement = payload.topic(pre, self.dev, "statement")
        self.notary = notary.Notary(self.dev, root + "device.key", self.keys)
        ssl_ctx = board.tls_context(b["ca"]) if b["tls"] and board.HAS_TLS else None
        self.client = mqtt.Client(
            "gridpact-" + self.dev, b["host"], b["port"], ssl_ctx, b["user"], b["password"],
            b["keepalive_s"], self.t_status, 5000, 3,
        )
        self.kick = asyncio.Event()
        now = time.ticks_ms()
        self.beats = [now, now, now]  # poll, publish, connection

    # ---------------------------------------------------------------- helpers
    def fault(self, e):
        self.errors += 1
        board.log_exception(e)

    def up_s(self):
        return time.ticks_diff(time.ticks_ms(), self.t0) // 1000

    def time_ok(self):
        """Publish once synced, or once the NTP hold is over (then readings keep TIME_UNSYNCED)."""
        return self.synced or self.up_s() >= self.cfg["ntp_hold_s"]

    def spill(self):
        """Move RAM-queued readings to flash, oldest first, so order survives the outage."""
        while self.ram_n:
            self.ring.append(self.ram[self.ram_head])
            self.ram_head = (self.ram_head + 1) % _RAM_SLOTS
            self.ram_n -= 1

    def enqueue(self, rec):
        if self.client.up and self.time_ok() and not self.ring.count and self.ram_n < _RAM_SLOTS:
            self.ram[(self.ram_head + self.ram_n) % _RAM_SLOTS][:] = rec
            self.ram_n += 1
        else:
            self.spill()
            self.ring.append(rec)
        self.kick.set()

    async def wait_kick(self, ms):
        try:
            await asyncio.wait_for(self.kick.wait(), ms / 1000)
        except asyncio.TimeoutError:
            pass
        self.kick.clear()

    # ---------------------------------------------------------------- poll
    async def poll_once(self):
        ts = board.unix_time()
        q = 0 if self.synced else meter.TIME_UNSYNCED  # with ts: NTP may answer during the read
        code, _exc = await self.master.read(self.unit, self.fc, self.start, self.count)
        if self.notary.tick(ts, self.synced):  # before this poll's counters: the window's last ones
            self.kick.set()
        n = 0
        if code == modbus.OK:
            rx = self.master.rx
            n = meter.extract(self.keys, self.master.mv[3 : 3 + 2 * self.count], self.vals)
            self.notary.read(self.vals, ts)
            end = 3 + 2 * self.count
            q |= self.tracker.assess(self.keys, self.vals, n, rx[end] | (rx[end + 1] << 8))
        else:
            self.faults += 1
            if code == modbus.ERR_TIMEOUT:
                q |= meter.MODBUS_TIMEOUT
            elif code == modbus.ERR_EXCEPTION:
                q |= meter.MODBUS_EXCEPTION
            else:
                q |= meter.MODBUS_CRC
        ringbuf.pack(self.rec, self.seq.take(), ts, q, self.boot, self.model_idx, self.vals, n)
        self.polls += 1
        self.enqueue(self.rec)

    async def poll_task(self):
        interval = self.cfg["poll_s"] * 1000
        due = time.ticks_ms()
        while True:
            try:
                await self.poll_once()
                self.beats[0] = time.ticks_ms()
            except Exception as e:
                self.fault(e)
            gc.collect()
            due = time.ticks_add(due, interval)
            wait = time.ticks_diff(due, time.ticks_ms())
            if wait < 0:  # overran: start afresh rather than poll in a burst
                due = time.ticks_ms()
                wait = 0
            await asyncio.sleep_ms(wait)

    # ---------------------------------------------------------------- publish
    async def publish_rec(self, buf, h, replayed):
        seq, ts, q, boot, model, n = h
        if q & meter.TIME_UNSYNCED and self.synced and boot == self.boot & 0xFFFF:
            ts += self.offset
            q = (q & ~meter.TIME_UNSYNCED) | meter.TIME_CORRECTED
        if replayed:
            q |= meter.REPLAYED
        name = maps.MODELS[model]
        msg = payload.reading(self.mac, self.dev, seq, ts, q, name, maps.MAPS[name][3], memoryview(buf)[14:78], n)
        ok = await self.client.publish(self.t_reading, msg)
        if ok:
            self.last_seq = seq  # the broker has it (PUBACK)
            self.notary.published(msg)
        gc.collect()
        return ok

    async def pub_task(self):
        while True:
            self.beats[1] = time.ticks_ms()
            try:
                if not self.client.up or not self.time_ok():
                    if self.ram_n and not self.client.up:
                        self.spill()
                    await self.wait_kick(1000)
                elif self.notary.pending:  # hourly, before the readings queue
                    if await self.client.publish(self.t_statement, self.notary.pending[0]):
                        self.notary.pending.pop(0)
                elif self.ring.count:
                    h = self.ring.peek()
                    if h is None:
                        await asyncio.sleep_ms(0)  # skipped a stretch of numbers: let others run
                    elif await self.publish_rec(self.ring.buf, h, True):
                        self.ring.pop(h[0])
                elif self.ram_n:
                    buf = self.ram[self.ram_head]
                    h = ringbuf.unpack(buf)
                    if h is None or await self.publish_rec(buf, h, False):
                        self.ram_head = (self.ram_head + 1) % _RAM_SLOTS
                        self.ram_n -= 1
                else:  # all out: a new reading, statement or connection kicks; the wait only bounds beats[1]
                    await self.wait_kick(_IDLE_MS)
            except Exception as e:
                self.fault(e)
                await asyncio.sleep_ms(1000)

    # ---------------------------------------------------------------- connection
    async def on_connect(self):
        c = self.client
        await c.publish(self.t_status, self.online, True)
        for entry in self.keys:
            msg = payload.discovery(self.cfg["prefix"], self.dev, self.model, FW, entry)
            await c.publish(payload.discovery_topic(self.dev, entry[0]), msg, True)
        for item in payload.HEALTH_HA:
            msg = payload.health_discovery(self.cfg["prefix"], self.dev, self.model, FW, item)
            await c.publish(payload.discovery_topic(self.dev, "health_" + item[0]), msg, True)
        await self.publish_health()
        gc.collect()

    async def conn_task(self):
        attempt = 0
        wifi_at = None
        w = self.cfg["wifi"]
        while True:
            self.beats[2] = time.ticks_ms()
            try:
                if not board.wifi_ok():
                    if self.client.up:
                        self.client.drop()
                    now = time.ticks_ms()
                    if wifi_at is None or time.ticks_diff(now, wifi_at) > 15000:
                        wifi_at = now
                        board.wifi_start(w["ssid"], w["password"])
                    await asyncio.sleep_ms(500)
                    continue
                if not self.client.up:
                    # this connection's mark, on its online and on its last will
                    self.online, self.client.will_msg = payload.session(self.mac, self.dev, self.boot, self.take_n())
                    try:
                        await self.client.connect(5000)
                    except Exception as e:
                        board.log("broker %s:%d: %r" % (self.client.host, self.client.port, e))
                        cap = self.cfg["broker"]["backoff_max_s"] * 1000
                        await asyncio.sleep_ms(mqtt.backoff_ms(attempt, 500, cap, board.rand16()))
                        attempt += 1
                        continue
                    attempt = 0
                    board.log("broker connected")
                    await self.on_connect()
                    self.kick.set()
                await self.client.wait_down(_LINK_CHECK_MS)  # WiFi looked at again at least this often
            except Exception as e:
                self.fault(e)
                await asyncio.sleep_ms(1000)

    # ---------------------------------------------------------------- health, time, watchdog
    def take_n(self):
        """The next (boot, n) mark's n, for a status or health message."""
        self.ctl_n += 1
        return self.ctl_n - 1

    async def publish_health(self):
        up, buf, drops, mem = self.up_s(), self.ring.count, self.ring.drops, board.mem_free()
        n = self.take_n()
        msg = payload.health(self.mac, self.dev, self.boot, n, self.reset, up, buf, drops, self.errors, mem, FW)
        return await self.client.publish(self.t_health, msg, True)

    async def health_task(self):
        while True:
            await asyncio.sleep_ms(self.cfg["health_s"] * 1000)
            try:
                if self.client.up:
                    await self.publish_health()
            except Exception as e:
                self.fault(e)

    async def ntp_task(self):
        delay = 2000
        while True:
            try:
                if board.wifi_ok():
                    before = board.unix_time()
                    board.ntp_sync(self.cfg["ntp_host"])
                    after = board.unix_time()
                    if not self.synced:
                        self.offset = after - before
                        self.synced = True
                        board.log("time synced, clock moved %d s" % self.offset)
                        self.kick.set()
                    delay = 6 * 3600 * 1000
            except Exception as e:
                board.log("ntp: %r" % (e,))
                delay = min(delay * 2, 60000)
            await asyncio.sleep_ms(delay)

    async def wdt_task(self):
        wdt = board.watchdog()
        backoff = self.cfg["broker"]["backoff_max_s"] * 1000
        limits = (2 * self.cfg["poll_s"] * 1000 + 30000, _STALE_MS, _STALE_MS + backoff)
        while True:
            await asyncio.sleep_ms(_FEED_MS)
            now = time.ticks_ms()
            healthy = True
            for i in range(3):
                if time.ticks_diff(now, self.beats[i]) > limits[i]:
                    healthy = False
            if healthy:
                wdt.feed()

    async def main(self):
        tasks = [
            asyncio.create_task(self.wdt_task()),
            asyncio.create_task(self.conn_task()),
            asyncio.create_task(self.ntp_task()),
            asyncio.create_task(self.pub_task()),
            asyncio.create_task(self.health_task()),
            asyncio.create_task(self.poll_task()),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
            except BaseException:
                pass
            self.client.drop()  # no DISCONNECT: like a power cut, the broker sends the last will
            self.ring.close()


def make(root=""):
    """Read config.json and build the App, or print every config error and return None."""
    cfg, errors = config.load(root + "config.json")
    if errors:
        for e in errors:
            print("config error:", e)
        return None
    uart, de = board.open_uart(cfg)
    return App(cfg, root, ringbuf.bump(root + "boot.dat"), board.reset_cause(), uart, de)
