"""Server time of passing a batch payload through a Lua script, against the
plain command, and the fixed cost of a script call (``INFO commandstats``,
usec_per_call, on a throwaway server).

    python benchmarks/peers/lua_costs.py [--payload-bytes 35000] [--calls 2000]

A 500-row batch of the standard job is about 30 KB of msgpack. These costs are
why the store writes it by a plain HSETNX ahead of storeBatch, and why a claim
returns records only up to 16 KiB and leaves longer ones to a plain HGET.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis

from redisbatch._embedded import EmbeddedServer
from redisbatch._scripts import scripts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payload-bytes", type=int, default=35_000)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with EmbeddedServer() as server:
        r = redis.Redis.from_url(server.url)
        payload = os.urandom(args.payload_bytes)
        put = r.register_script("redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1")
        get = r.register_script("return redis.call('HGET', KEYS[1], ARGV[1])")
        empty = r.register_script("return 1")
        hgets = r.register_script("for i=1,12 do redis.call('HGET', KEYS[1], 'a') end return 1")
        incrs = r.register_script(
            "for i=1,12 do redis.call('HINCRBY', KEYS[1], 'b', 1) end return 1"
        )
        claim = r.register_script(scripts()["claimBatch"].source)
        r.hset("small", mapping={"a": 1, "b": 2})
        keys8 = [f"missing{i}" for i in range(8)]
        cases = (
            (f"plain HSET of {args.payload_bytes} B", "hset", lambda i: r.hset("h1", i, payload)),
            ("the same HSET inside EVALSHA", "evalsha",
             lambda i: put(keys=["h2"], args=[i, payload])),
            (f"plain HGET of {args.payload_bytes} B", "hget", lambda i: r.hget("h1", i)),
            ("the same HGET returned by EVALSHA", "evalsha", lambda i: get(keys=["h2"], args=[i])),
            ("EVALSHA 'return 1'", "evalsha", lambda i: empty(keys=["small"])),
            ("EVALSHA 12 x HGET", "evalsha", lambda i: hgets(keys=["small"])),
            ("EVALSHA 12 x HINCRBY", "evalsha", lambda i: incrs(keys=["small"])),
            ("claimBatch on a missing job (prologue + 1 HGET)", "evalsha",
             lambda i: claim(keys=keys8, args=["g", "w", 1000, 5, "", "r"])),
        )  # fmt: skip
        for label, command, call in cases:
            call(0)
            r.config_resetstat()
            for i in range(args.calls):
                call(i)
            stats = r.info("commandstats")[f"cmdstat_{command}"]
            print(f"{stats['usec_per_call']:8.2f} us/call  {label}")


if __name__ == "__main__":
    main()
