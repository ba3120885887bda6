"""What a guarded stream adds per chunk, from Python.

    .venv/bin/python bench/stream_bench.py [--streams N] [--json FILE]

One guard, opened with `Guard.open` defaults (the shipped policy bundle: its
`pii-redaction` and `forbidden-output` policies evaluate every chunk), no
budget. Each stream is one model call whose answer arrives as 400 word-sized
chunks (each with the space before it), of two answers: one with an e-mail
address, a phone number and a card number every 230 bytes, one without: `call.chunk(text)` for each (the on_chunk
evaluation over the window, the hold rule, the release), then
`finish_stream()` and `end()` outside the timing. The baseline, interleaved
chunk by chunk so that the machine's load moves both alike, is the same loop
without the guard: taking the chunk and appending it to the text shown.

Prints per-chunk medians and p99 of both, the added latency per chunk
(guarded minus unguarded), and the mean over whole streams; --json writes
them to a file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import bastion

# Three matches every 230 bytes (each re-found while it stays in the window),
# and an answer without any.
TEXTS = {
    "pii": ("Your order A-1001 shipped yesterday and the courier will call +1 415 555 2671 "
            "before delivery. Questions? Mail support@example.com or reply here. The card "
            "4111 1111 1111 1111 was charged $42.50 on Monday, and the receipt is attached. "),
    "plain": ("Your order A-1001 shipped yesterday and the courier will arrive before noon. "
              "If anything is missing, reply here and we will get back to you within a day; "
              "returns are free for thirty days, and refunds take three to five days. "),
}


def chunks(paragraph: str, n: int = 400) -> list[str]:
    words = paragraph.split(" ")
    pieces = [(" " if i else "") + w for i, w in enumerate(words) if w or i]
    out: list[str] = []
    while len(out) < n:
        out.extend(pieces)
    return out[:n]


def stats(ns: list[int]) -> dict[str, float]:
    s = sorted(ns)
    return {"median_us": statistics.median(s) / 1e3, "p99_us": s[int(len(s) * 0.99)] / 1e3}


def run(streams: int, paragraph: str) -> dict[str, object]:
    pieces = chunks(paragraph)
    clock = time.perf_counter_ns
    guarded: list[int] = []
    plain: list[int] = []
    stream_guarded: list[int] = []
    stream_plain: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        guard = bastion.Guard.open(Path(tmp) / "bastion")
        for s in range(streams + 5):  # the first 5 warm up
            call = guard.begin_model("gpt-4o", "hi", agent_id="bench", run_id="run-1")
            shown: list[str] = []
            unguarded: list[str] = []
            total_g = total_p = 0
            for piece in pieces:
                t0 = clock()
                stop, text = call.chunk(piece)
                t1 = clock()
                unguarded.append(piece)
                t2 = clock()
                if stop:
                    raise SystemExit("the bundle stopped the benchmark's stream")
                shown.append(text)
                if s >= 5:
                    guarded.append(t1 - t0)
                    plain.append(t2 - t1)
                total_g += t1 - t0
                total_p += t2 - t1
            shown.append(call.finish_stream()[1])
            call.end("".join(shown))
            if s >= 5:
                stream_guarded.append(total_g)
                stream_plain.append(total_p)
        text = "".join(shown)
        assert "support@example.com" not in text and "4111 1111" not in text, text
        assert paragraph != TEXTS["plain"] or text == "".join(pieces), "the stream lost text"
        guard.close()
    g, p = stats(guarded), stats(plain)
    per_chunk_mean = (sum(stream_guarded) - sum(stream_plain)) / len(guarded) / 1e3
    return {
        "chunks_per_stream": len(pieces),
        "streams": streams,
        "guarded_chunk": g,
        "unguarded_chunk": p,
        "added_median_us": g["median_us"] - p["median_us"],
        "added_p99_us": g["p99_us"] - p["p99_us"],
        "added_mean_us": per_chunk_mean,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    for name, paragraph in TEXTS.items():
        result = results[name] = run(args.streams, paragraph)
        g, p = result["guarded_chunk"], result["unguarded_chunk"]
        print(f"{name}: {result['chunks_per_stream']}-chunk streams x {result['streams']}")
        print(f"  call.chunk       median {g['median_us']:7.2f} us   p99 {g['p99_us']:7.2f} us")
        print(f"  unguarded        median {p['median_us']:7.2f} us   p99 {p['p99_us']:7.2f} us")
        print(f"  added per chunk  median {result['added_median_us']:7.2f} us   "
              f"p99 {result['added_p99_us']:7.2f} us   mean {result['added_mean_us']:7.2f} us")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
