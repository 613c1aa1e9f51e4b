#!/usr/bin/env python3
"""Holds every packet that iptables hands to an NFQUEUE queue for a fixed time, then accepts it.

A stand-in for `tc qdisc ... netem delay` on kernels built without sch_netem (or sch_prio):
deploy/local/three-regions.sh starts one in each region namespace when tc refuses netem.
Python standard library only; it speaks nfnetlink_queue over a raw netlink socket.

    nfqueue-delay.py --queue NUM:DELAY_MS [--queue NUM:DELAY_MS ...] [--ready-file PATH]

Use it on the receiving side (iptables PREROUTING), not on the sender's OUTPUT/POSTROUTING:
a packet held there still counts against its socket's TCP Small Queues budget, which caps a
TCP stream at about two packets per delay (netem avoids this by orphaning the skb; a queue
cannot). On PREROUTING the veth has already orphaned it.

Each queue's delay is constant, so its packets leave in the order they came: one batch
verdict ("accept every id up to N") releases all that are due. Payloads are never copied to
user space (NFQNL_COPY_META) and GSO packets stay whole.
"""

import argparse
import collections
import errno
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_GSO = 0x4
NF_ACCEPT = 1
SO_RCVBUFFORCE = 33
NLA_TYPE_MASK = 0x3FFF


def nla(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)



class Delayer:
    def __init__(self, delays, maxlen):
        self.delays = delays  # queue number -> seconds
        self.held = {num: collections.deque() for num in delays}  # (due, packet id)
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        self.sock.bind((0, 0))
        for num in delays:
            self.config(num, nla(NFQA_CFG_CMD, struct.pack(">BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)))
            self.config(num, nla(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)))
            self.config(num, nla(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", maxlen)))
            self.config(
                num,
                nla(NFQA_CFG_FLAGS, struct.pack(">I", NFQA_CFG_F_GSO))
                + nla(NFQA_CFG_MASK, struct.pack(">I", NFQA_CFG_F_GSO)),
            )

    def send(self, num, msg_type, attrs, flags=0):
        self.seq += 1
        body = struct.pack(">BBH", socket.AF_UNSPEC, 0, num) + attrs
        header = struct.pack(
            "=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
            NLM_F_REQUEST | flags, self.seq, 0,
        )
        self.sock.send(header + body)
        return self.seq

    def config(self, num, attrs):
        seq = self.send(num, NFQNL_MSG_CONFIG, attrs, NLM_F_ACK)
        while True:
            data = self.sock.recv(1 << 16)
            now = time.monotonic()
            for kind, mseq, payload in messages(data):
                if kind == NLMSG_ERROR and mseq == seq:
                    (code,) = struct.unpack("=i", payload[:4])
                    if code != 0:
                        raise OSError(-code, "nfqueue %d config: %s" % (num, os.strerror(-code)))
                    return
                self.take(kind, payload, now)

    def take(self, kind, payload, now):
        if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET or len(payload) < 4:
            return
        (num,) = struct.unpack_from(">H", payload, 2)  # nfgenmsg.res_id
        if num not in self.held:
            return
        offset = 4
        while offset + 4 <= len(payload):
            length, attr = struct.unpack_from("=HH", payload, offset)
            if length < 4:
                return
            if attr & NLA_TYPE_MASK == NFQA_PACKET_HDR:
                (packet_id,) = struct.unpack_from(">I", payload, offset + 4)
                self.held[num].append((now + self.delays[num], packet_id))
                return
            offset += (length + 3) & ~3

    def next_due(self):
        heads = [held[0][0] for held in self.held.values() if held]
        return min(heads) if heads else None

    def release(self, now):
        for num, held in self.held.items():
            last = None
            while held and held[0][0] <= now:
                last = held.popleft()[1]
            if last is not None:
                self.send(num, NFQNL_MSG_VERDICT_BATCH, nla(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, last)))


def messages(data):
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        yield kind, seq, data[offset + 16 : offset + length]
        offset += (length + 3) & ~3


def queue_spec(text):
    num, _, delay = text.partition(":")
    if not delay:
        raise argparse.ArgumentTypeError("expected NUM:DELAY_MS, got %r" % text)
    return int(num), float(delay)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=queue_spec, action="append", required=True, metavar="NUM:DELAY_MS")
    parser.add_argument("--maxlen", type=int, default=65536, help="packets held per queue at most (then dropped)")
    parser.add_argument("--ready-file", help="written once every queue is bound")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    delayer = Delayer({num: ms / 1000.0 for num, ms in args.queue}, args.maxlen)
    if args.ready_file:
        with open(args.ready_file, "w") as ready:
            ready.write("%d\n" % os.getpid())
    print(
        "nfqueue-delay: pid %d, %s" % (os.getpid(), ", ".join("queue %d +%g ms" % q for q in args.queue)),
        flush=True,
    )

    overruns = 0
    while True:
        due = delayer.next_due()
        timeout = None if due is None else max(0.0, due - time.monotonic())
        readable, _, _ = select.select([delayer.sock], [], [], timeout)
        if readable:
            for _ in range(256):
                try:
                    data = delayer.sock.recv(1 << 16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as err:
                    if err.errno != errno.ENOBUFS:
                        raise
                    # We fell behind and lost some packet messages; a later batch verdict,
                    # which accepts every id up to its own, lets those packets go too.
                    overruns += 1
                    if overruns in (1, 10, 100) or overruns % 1000 == 0:
                        print("nfqueue-delay: receive buffer overrun x%d" % overruns, flush=True)
                    continue
                now = time.monotonic()
                for kind, _seq, payload in messages(data):
                    delayer.take(kind, payload, now)
        delayer.release(time.monotonic())


if __name__ == "__main__":
    main()
