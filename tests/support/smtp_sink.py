#!/usr/bin/env python3
"""A real SMTP server on loopback for the mail tests (aiosmtpd, pinned in scripts/test).

    smtp_sink.py OUTDIR [--delay SECONDS] [--reject]

Listens on 127.0.0.1 on a free port and prints that port on the first line of stdout. Each
message it accepts is written to OUTDIR as NNNNNN.eml (written to a temporary name first, then
renamed, so a reader never sees half a message), preceded by one `X-Envelope-To:` line per
recipient. `--delay` waits before accepting each message (a slow server); `--reject` refuses
every message with 550. Exits when stdin closes (its test ended) or when killed.
"""

import argparse
import asyncio
import itertools
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, outdir, delay, reject):
        self.outdir = outdir
        self.delay = delay
        self.reject = reject
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.reject:
            return "550 rejected by the test sink"
        n = next(self.counter)
        tmp = os.path.join(self.outdir, f".{n:06d}.tmp")
        final = os.path.join(self.outdir, f"{n:06d}.eml")
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        with open(tmp, "wb") as f:
            for rcpt in envelope.rcpt_tos:
                f.write(f"X-Envelope-To: {rcpt}\r\n".encode("utf-8"))
            f.write(content)
        os.rename(tmp, final)
        return "250 OK"


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--reject", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    handler = Sink(args.outdir, args.delay, args.reject)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", enable_SMTPUTF8=True),
        host="127.0.0.1",
        port=0,
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    # Stop when the test that started us goes away, even if it could not kill us.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
