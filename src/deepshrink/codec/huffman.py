"""Canonical Huffman coding, vectorised with numpy.

A code is described by its code lengths alone (one per symbol of the alphabet, 0 = unused,
at most :data:`MAX_CODE_LENGTH` bits); canonical codes are assigned from the lengths in order
of (length, symbol), so only the lengths need storing. Bits are written most significant first.

Encoding looks up up to four symbols at once in a table of concatenated codes and packs the
items into 64-bit words (:func:`deepshrink.codec.bits.pack_codes`). Decoding is table-driven
with no per-bit or per-symbol Python loop: the stream is cut into lanes decoded side by side,
each step a lookup of a 14-bit window giving all the codes that lie in it (see "decoding in
lanes" below); streams under 8 kbit, where numpy call overhead dominates, follow the chain of
code starts by pointer doubling instead, and codes of one length are unpacked directly. All
paths give the same symbols and the same errors; ``_reference_encode`` keeps the previous encoder
as the tests' oracle.
"""

from __future__ import annotations

import heapq
import operator

import numpy as np

from deepshrink.codec.bits import MAX_PACKED_WIDTH, byte_words, pack_codes, windows

MAX_CODE_LENGTH = 15
_GROUP_TABLE = 1 << 16  # entries of the encoder's table of symbol sequences


def code_lengths(counts: np.ndarray, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Huffman code lengths (uint8, same size as ``counts``) for symbol frequencies ``counts``,
    limited to ``max_length`` bits. Unused symbols get 0; a single used symbol gets 1 bit."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.zeros(counts.size, dtype=np.uint8)
    used = np.flatnonzero(counts)
    if used.size > 1 << max_length:
        raise ValueError(f"{used.size} symbols cannot be coded in {max_length} bits")
    if used.size == 1:
        lengths[used] = 1
    elif used.size > 1:
        depth = _tree_depths(counts[used])
        lengths[used] = _limit_lengths(depth, counts[used], max_length)
    return lengths


def _tree_depths(weights: np.ndarray) -> np.ndarray:
    """Depth of each leaf in a Huffman tree built with a heap over ``weights`` (all > 0)."""
    n = weights.size
    heap = [(int(w), i) for i, w in enumerate(weights)]
    heapq.heapify(heap)
    parent = np.zeros(2 * n - 1, dtype=np.int64)
    node = n
    while len(heap) > 1:
        w1, a = heapq.heappop(heap)
        w2, b = heapq.heappop(heap)
        parent[a] = parent[b] = node
        heapq.heappush(heap, (w1 + w2, node))
        node += 1
    depth = np.zeros(2 * n - 1, dtype=np.int64)
    for child in range(2 * n - 3, -1, -1):  # parents are created after their children
        depth[child] = depth[parent[child]] + 1
    return depth[:n]


def _limit_lengths(lengths: np.ndarray, weights: np.ndarray, max_length: int) -> np.ndarray:
    """Clamp code lengths to ``max_length`` and restore the Kraft inequality: lengthen the
    deepest codes still below the limit, then shorten the most frequent symbols while room is left."""
    lengths = np.minimum(lengths, max_length)
    budget = 1 << max_length
    kraft = int((1 << (max_length - lengths)).sum())
    while kraft > budget:
        below = np.flatnonzero(lengths < max_length)
        deepest = below[lengths[below] == lengths[below].max()]
        victim = deepest[np.argmin(weights[deepest])]
        kraft -= 1 << (max_length - lengths[victim] - 1)
        lengths[victim] += 1
    for symbol in np.argsort(-weights, kind="stable"):
        while lengths[symbol] > 1 and kraft + (1 << (max_length - lengths[symbol])) <= budget:
            kraft += 1 << (max_length - lengths[symbol])
            lengths[symbol] -= 1
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code (uint32, right-aligned in its length) of each symbol; 0 where unused."""
    lengths = np.asarray(lengths, dtype=np.int64)
    order = _canonical_order(lengths)
    top = int(lengths.max(initial=0))
    spans = np.int64(1) << (top - lengths[order])
    starts = np.concatenate([[0], np.cumsum(spans)[:-1]]).astype(np.int64)
    codes = np.zeros(lengths.size, dtype=np.uint32)
    codes[order] = (starts >> (top - lengths[order])).astype(np.uint32)
    return codes


def _canonical_order(lengths: np.ndarray) -> np.ndarray:
    """Used symbols sorted by (length, symbol)."""
    used = np.flatnonzero(lengths)
    return used[np.argsort(lengths[used], kind="stable")]


def check_lengths(lengths: np.ndarray) -> None:
    """Raise ValueError unless ``lengths`` describe a prefix code (Kraft sum <= 1)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH):
        raise ValueError(f"code lengths must lie in [0, {MAX_CODE_LENGTH}]")
    used = lengths[lengths > 0]
    if int((np.int64(1) << (MAX_CODE_LENGTH - used)).sum()) > 1 << MAX_CODE_LENGTH:
        raise ValueError("code lengths are over-subscribed (not a prefix code)")


def encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """Huffman-code ``symbols`` (N,) with the canonical code of ``lengths``; returns
    (bytes, number of bits). Raises ValueError for a symbol without a code."""
    symbols = np.asarray(symbols)
    if symbols.dtype.kind not in "iu":
        symbols = symbols.astype(np.int64)
    symbols = symbols.reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths)
    if symbols.size == 0:
        return b"", 0
    if (symbols.dtype.kind == "i" and symbols.min() < 0) or symbols.max() >= lengths.size:
        raise ValueError("a symbol has no code")
    group = _group_size(lengths, symbols.size)
    codes, sizes = _group_table(lengths, group)
    whole = symbols.size - symbols.size % group
    index = symbols[:whole].reshape(-1, group)[:, 0].astype(np.intp)
    for column in range(1, group):
        index *= lengths.size
        index += symbols[column:whole:group]
    item_codes, item_sizes = codes[index], sizes[index]
    if whole < symbols.size:  # the last symbols, one item each
        single_codes, single_sizes = _group_table(lengths, 1)
        rest = symbols[whole:].astype(np.intp)
        item_codes = np.concatenate([item_codes, single_codes[rest]])
        item_sizes = np.concatenate([item_sizes, single_sizes[rest]])
    if not item_sizes.all():
        raise ValueError("a symbol has no code")
    return pack_codes(item_codes, item_sizes)


def _group_size(lengths: np.ndarray, count: int) -> int:
    """How many symbols the encoder codes as one item: a table of alphabet**group entries
    (at most 2**16, and not much more than the stream), codes of at most 63 bits."""
    budget = max(256, min(_GROUP_TABLE, count))
    top = int(lengths.max())
    group = 1
    while group < 4 and lengths.size ** (group + 1) <= budget and (group + 1) * top <= MAX_PACKED_WIDTH:
        group += 1
    return group


def _group_table(lengths: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated code (uint64) and length (uint8; 0 where a symbol has no code) of every
    sequence of ``group`` symbols, indexed by the sequence read as a base-alphabet number."""
    single = canonical_codes(lengths).astype(np.uint64)
    sizes = lengths.astype(np.uint8)
    codes, total, valid = single, sizes, sizes > 0
    for _ in range(group - 1):
        codes = ((codes[:, None] << sizes.astype(np.uint64)) | single).reshape(-1)
        total = (total[:, None] + sizes).reshape(-1)
        valid = (valid[:, None] & (sizes > 0)).reshape(-1)
    return codes, np.where(valid, total, 0).astype(np.uint8)


def _reference_encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """The encoder before the item packing (one unpacked byte per bit); the oracle of the tests
    and the "old" column of ``benchmarks/huffman_speed.py``."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths)
    if symbols.size == 0:
        return b"", 0
    if symbols.min() < 0 or symbols.max() >= lengths.size or not lengths[symbols].all():
        raise ValueError("a symbol has no code")
    sizes = lengths[symbols]
    aligned = canonical_codes(lengths).astype(np.uint16)[symbols] << (16 - sizes).astype(np.uint16)
    bits = np.unpackbits(aligned.astype(">u2").view(np.uint8).reshape(-1, 2), axis=1)
    bits = bits[np.arange(16) < sizes[:, None]]
    return np.packbits(bits).tobytes(), int(bits.size)


def check_size(nbytes: int, lengths: np.ndarray, count: int) -> None:
    """ValueError unless ``nbytes`` bytes can hold exactly ``count`` symbols of the code of
    ``lengths`` (fewer than 8 padding bits), checked from the sizes alone, before decoding."""
    if count < 0:
        raise ValueError(f"negative symbol count {count}")
    if count == 0:
        if nbytes:
            raise ValueError("stream has bytes but no symbols")
        return
    used = np.asarray(lengths, dtype=np.int64)
    used = used[used > 0]
    nbits = 8 * nbytes
    if not used.size or count * int(used.min()) > nbits:
        raise ValueError(f"{nbytes} bytes cannot hold {count} symbols")
    top = int(used.max())
    if nbits - count * top >= 8:
        raise ValueError(f"stream length does not match: {count} symbols of at most {top} bits "
                         f"cannot fill {nbits} bits")


def decode(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Decode ``count`` symbols (int64) from ``data``, coded with the canonical code of ``lengths``.

    The stream must use all of ``data``: only zero bits may follow the last code, and fewer
    than 8 of them. Any violation (an invalid code, too few or too many bits, bad code
    lengths) is a ValueError, raised before anything proportional to ``count`` is allocated
    when ``data`` is too short or too long for ``count`` symbols.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    check_lengths(lengths)
    count = operator.index(count)
    data = bytes(data)
    nbits = 8 * len(data)
    check_size(len(data), lengths, count)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    used = lengths[lengths > 0]
    top = int(used.max())
    if int(used.min()) == top:
        return _decode_fixed(data, lengths, count, top)
    if nbits < _LANES_FROM_BITS:
        return _decode_by_pointer_doubling(data, lengths, count)
    return _decode_in_lanes(data, lengths, count, top)


def _check_end(data: bytes, lengths: np.ndarray, count: int, symbols: np.ndarray, stop: int) -> np.ndarray:
    """The first ``count`` of ``symbols``, the codes read from bit 0 up to bit ``stop`` (the
    end of the last one), after checking that the ``count``-th code ends in the last byte and
    only zero bits follow it."""
    if symbols.size < count:
        raise ValueError("invalid code in stream")
    nbits = 8 * len(data)
    end = stop - int(lengths[symbols[count:]].sum())
    if end > nbits or nbits - end >= 8:
        raise ValueError(f"stream length does not match: {count} symbols use {end} of {nbits} bits")
    if end < nbits and data[-1] & ((1 << (nbits - end)) - 1):
        raise ValueError("non-zero padding bits after the last code")
    return symbols[:count].astype(np.int64)


def _decode_fixed(data: bytes, lengths: np.ndarray, count: int, width: int) -> np.ndarray:
    """Every used code has ``width`` bits: code i is the i-th used symbol."""
    order = np.flatnonzero(lengths)
    codes = windows(data, np.arange(count, dtype=np.uint64) * np.uint64(width), width)
    if int(codes.max()) >= order.size:
        raise ValueError("invalid code in stream")
    return _check_end(data, lengths, count, order[codes], count * width)


# ---- table-driven decoding in lanes ------------------------------------------------------------
#
# The bit stream is cut into lanes of about the same number of bits, decoded side by side:
# every step reads a T-bit window at each lane's position, and one table lookup gives the codes
# that lie wholly in it (up to K symbols) and their bits. A lane decodes every code that starts
# before its end; its last step may run past the end, and is cut back to the codes that start
# before it. So lane k + 1 must start exactly where lane k stops (the first code boundary at or
# after lane k + 1's first bit). That point is found first by speculation: Huffman codes
# resynchronise, so decoding from W bits before a lane's first bit almost always reaches the
# true code boundary by then. Each lane's start is then checked against the stop of the lane
# before (lane 0 starts at bit 0); a lane that does not match is decoded again from that stop,
# and if lanes still disagree (codes that do not resynchronise, or a damaged stream), the lanes
# from the first disagreement on are decoded from each of their few possible starts and chained
# exactly. The symbols come out of the recorded table entries in lane order.

_LANES_FROM_BITS = 1 << 13  # shorter streams decode by pointer doubling (fewer numpy calls)
_LANE_BITS = 1 << 10        # at least this many bits per lane
_MAX_LANES = 1 << 12
_WARMUP_BITS = 256          # speculation starts this far before a lane
_TABLE_BITS = 14            # window of a lookup (at least the longest code)
_MAX_PER_STEP = 8           # symbols per lookup
_BROKEN = np.uint64(1 << 40)  # added to a lane's position at an invalid code


class _Tables:
    """Lookup tables of a window of ``bits`` bits (``w``, a T-bit number): entry ``w`` steps over
    the codes that lie wholly in the window, at most ``per_step`` of them, ``_BROKEN`` bits if the
    window starts with no code; entry ``2**T`` (``skip``) is a step not taken."""

    def __init__(self, lengths: np.ndarray, top: int, bits: int, per_step: int):
        self.bits, self.top, self.per_step = bits, top, per_step
        self.first_symbol, self.first_size = _first_code_tables(lengths, top)
        dtype = _symbol_type(lengths.size)
        # dynamic programming over window widths t = 0..T: the codes of a t-bit window are its
        # first code and then those of the (t - length)-bit window after it; the tables of all
        # widths lie one after another (width t from 2**t - 1 on)
        total = (1 << (bits + 1)) - 1
        count = np.zeros(total, dtype=np.uint8)
        ends = np.zeros((total, per_step), dtype=np.uint8)  # bit offset after each code
        symbols = np.zeros((total, per_step), dtype=dtype)
        for width in range(1, bits + 1):
            window = np.arange(1 << width, dtype=np.int64)
            ahead = window >> (width - top) if width >= top else window << (top - width)
            size = self.first_size[ahead]
            fits = (size > 0) & (size <= width)
            rest = np.where(fits, width - size, 0)
            after = (1 << rest) - 1 + (window & ((1 << rest) - 1))
            here = slice((1 << width) - 1, (1 << (width + 1)) - 1)
            count[here] = np.where(fits, np.minimum(count[after] + 1, per_step), 0)
            ends[here, 0] = size
            ends[here, 1:] = ends[after, :-1] + size[:, None].astype(np.uint8)
            symbols[here, 0] = self.first_symbol[ahead]
            symbols[here, 1:] = symbols[after, :-1]
        full = slice((1 << bits) - 1, total)
        self.counts = np.append(count[full], np.uint8(0))
        last = np.maximum(count[full].astype(np.intp) - 1, 0)[:, None]
        used = np.take_along_axis(ends[full], last, 1)[:, 0].astype(np.uint64)
        self.step_bits = np.append(np.where(count[full] > 0, used, _BROKEN), np.uint64(0))
        self.symbols = np.concatenate([symbols[full], np.zeros((1, per_step), dtype=dtype)])
        self.masks = np.arange(per_step) < np.arange(per_step + 1)[:, None]
        self.skip = np.uint64(1 << bits)

    def run(self, words: np.ndarray, pos: np.ndarray, end: np.ndarray,
            record: list | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decode each lane from ``pos`` (uint64, changed in place) over every code that starts
        before ``end``; append the table entry of every step to ``record`` (one (lanes,) array per
        step). Returns (stop, last, keep): the first code boundary at or after each lane's end, or
        ``_BROKEN`` plus junk after an invalid code; the step of each lane's last table entry
        (-1 if none) and how many of that entry's symbols are the lane's."""
        drop = np.uint64(64 - self.bits)
        last_window = np.zeros(pos.size, dtype=np.uint64)
        last = np.full(pos.size, -1, dtype=np.int64)
        row = 0
        while True:
            lanes = np.flatnonzero(pos < end)  # a broken lane is past every end
            if not lanes.size:
                break
            every = lanes.size == pos.size
            here = pos if every else pos[lanes]  # with every lane, steps change pos in place
            # steps that cannot reach any lane's end (each step takes at most T bits) need no mask
            repeats = (int(((end if every else end[lanes]) - here).min()) - 1) // self.bits + 1
            for _ in range(repeats):
                window = (np.take(words, here >> np.uint64(3), mode="clip") << (here & np.uint64(7))) >> drop
                here += np.take(self.step_bits, window)
                if record is not None:
                    if not every:
                        window_of_all = np.full(pos.size, self.skip)
                        window_of_all[lanes] = window
                    record.append(window if every else window_of_all)
            if not every:
                pos[lanes] = here
            last_window[lanes] = window
            row += repeats
            last[lanes] = row - 1
        # cut each lane's last step back to the codes that start before its end
        whole = (pos < _BROKEN) & (last >= 0)
        keep = np.zeros(pos.size, dtype=np.uint8)
        if whole.any():
            window = last_window[whole]
            begin = pos[whole] - self.step_bits[window]
            room = (end[whole] - begin).astype(np.int64)
            offset = np.zeros(window.size, dtype=np.int64)
            kept = np.zeros(window.size, dtype=np.uint8)
            counts = self.counts[window]
            mask = (1 << self.bits) - 1
            for slot in range(self.per_step):
                more = (slot < counts) & (offset < room)
                ahead = ((window.astype(np.int64) << offset) & mask) >> (self.bits - self.top)
                offset += np.where(more, self.first_size[ahead], 0)
                kept += more
            pos[whole] = begin + offset.astype(np.uint64)
            keep[whole] = kept
        return pos, last, keep

    def expand(self, entries: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The symbols of table ``entries`` (in stream order), the first ``counts`` of each."""
        rows = np.take(self.symbols, entries, axis=0)
        return np.compress(np.take(self.masks, counts, axis=0).reshape(-1), rows.reshape(-1))


def _symbol_type(alphabet: int) -> type:
    return np.uint8 if alphabet <= 1 << 8 else np.uint16 if alphabet <= 1 << 16 else np.uint32


def _first_code_tables(lengths: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(symbol, code length) of the code at the front of every ``top``-bit window; length 0 where
    the window starts with no code."""
    order = _canonical_order(lengths)
    repeats = np.int64(1) << (top - lengths[order])
    filled = int(repeats.sum())
    symbol = np.zeros(1 << top, dtype=np.int64)
    size = np.zeros(1 << top, dtype=np.int64)
    symbol[:filled] = np.repeat(order, repeats)
    size[:filled] = np.repeat(lengths[order], repeats)
    return symbol, size


class _Lanes:
    """The lanes of one stream: their bits, starts (speculated, then checked), stops and
    recorded table entries."""

    def __init__(self, data: bytes, lengths: np.ndarray, top: int):
        nbits = 8 * len(data)
        used = lengths[lengths > 0]
        self.align = int(np.gcd.reduce(used))  # every code starts at a multiple of this
        self.top = top
        bits = max(top, min(_TABLE_BITS, nbits.bit_length() - 6))
        self.tables = _Tables(lengths, top, bits, min(_MAX_PER_STEP, bits // int(used.min())))
        self.words = byte_words(data)
        unit = 64 * self.align
        lanes = max(1, min(_MAX_LANES, nbits // _LANE_BITS))
        width = -(-nbits // lanes // unit) * unit
        self.count = lanes = max(1, nbits // width)
        self.begin = np.arange(lanes, dtype=np.uint64) * np.uint64(width)
        self.end = np.append(self.begin[1:], np.uint64(nbits))
        self.start = self.begin.copy()
        if lanes > 1:  # speculation: where each lane's first code starts
            warmup = np.uint64(min(width, -(-_WARMUP_BITS // unit) * unit))
            self.start[1:] = self.tables.run(self.words, self.begin[1:] - warmup, self.begin[1:], None)[0]
        steps: list[np.ndarray] = []
        self.stop, self.last, self.keep = self.tables.run(self.words, self.start.copy(), self.end, steps)
        self.record = np.stack(steps) if steps else np.zeros((0, lanes), dtype=np.uint64)

    def redo(self, which: np.ndarray) -> None:
        """Decode lanes ``which`` again from their ``start``."""
        steps: list[np.ndarray] = []
        self.stop[which], self.last[which], self.keep[which] = self.tables.run(
            self.words, self.start[which].copy(), self.end[which], steps)
        redone = np.stack(steps) if steps else np.zeros((0, which.size), dtype=np.uint64)
        if redone.shape[0] > self.record.shape[0]:
            padding = np.full((redone.shape[0] - self.record.shape[0], self.count), self.tables.skip)
            self.record = np.concatenate([self.record, padding])
        self.record[:, which] = self.tables.skip
        self.record[: redone.shape[0], which] = redone

    def chained(self) -> int:
        """How many lanes from lane 0 on start where the lane before stopped (a broken lane ends the chain)."""
        joined = (self.start[1:] == self.stop[:-1]) & (self.stop[:-1] < _BROKEN)
        wrong = np.flatnonzero(~joined)
        return int(wrong[0]) + 1 if wrong.size else self.count

    def chain_exactly(self, first: int) -> None:
        """Set ``start`` of lanes ``first``.. exactly: decode each from every code boundary it may
        start at (within its first ``top`` bits, on the code alignment), then follow the stops
        from lane ``first - 1``."""
        offsets = np.arange(0, self.top, self.align, dtype=np.uint64)
        lanes = np.arange(first, self.count)
        tries = (self.begin[lanes, None] + offsets).reshape(-1)
        exits = self.tables.run(self.words, tries, np.repeat(self.end[lanes], offsets.size), None)[0]
        exits = exits.reshape(lanes.size, offsets.size).tolist()
        here = int(self.stop[first - 1])
        for row, lane in enumerate(lanes.tolist()):
            self.start[lane] = here
            here = exits[row][(here - int(self.begin[lane])) // self.align]
            if here >= _BROKEN:  # the chain breaks in this lane; later lanes are never used
                self.start[lane + 1:] = _BROKEN
                break

    def symbols(self, lanes: int) -> tuple[np.ndarray, int]:
        """The symbols of the first ``lanes`` lanes and the bit after the last of their codes."""
        tables, record = self.tables, self.record[:, :lanes]
        stop = int(self.stop[lanes - 1])
        cut = np.flatnonzero(self.last[:lanes] >= 0)
        if stop >= _BROKEN:  # the last lane met an invalid code: its symbols end there
            column = record[:, lanes - 1]
            invalid = int(np.flatnonzero(tables.step_bits[column] >= _BROKEN)[0])
            stop = int(self.start[lanes - 1]) + int(tables.step_bits[column[:invalid]].sum())
            record[invalid:, lanes - 1] = tables.skip
            cut = cut[cut < lanes - 1]
        entries = record.T.reshape(-1)
        counts = np.take(tables.counts, entries)
        counts[cut * record.shape[0] + self.last[cut]] = self.keep[cut]
        some = np.flatnonzero(counts)  # steps not taken, junk after an invalid code
        return tables.expand(np.take(entries, some), np.take(counts, some)), stop


def _decode_in_lanes(data: bytes, lengths: np.ndarray, count: int, top: int) -> np.ndarray:
    lanes = _Lanes(data, lengths, top)
    good = lanes.chained()
    if good < lanes.count and lanes.stop[good - 1] < _BROKEN:  # each wrong lane again from the stop before it
        wrong = np.flatnonzero((lanes.start[1:] != lanes.stop[:-1]) & (lanes.stop[:-1] < _BROKEN)) + 1
        lanes.start[wrong] = lanes.stop[wrong - 1]
        lanes.redo(wrong)
        good = lanes.chained()
    if good < lanes.count and lanes.stop[good - 1] < _BROKEN:
        lanes.chain_exactly(good)
        lanes.redo(np.arange(good, lanes.count))
        good = lanes.chained()
    symbols, stop = lanes.symbols(good)
    return _check_end(data, lengths, count, symbols, stop)


# ---- pointer doubling (short streams) ----------------------------------------------------------


def _decode_by_pointer_doubling(data: bytes, lengths: np.ndarray, count: int) -> np.ndarray:
    """Look up a code at every bit position, then follow the chain of code starts from bit 0 by
    pointer doubling (``log2(count)`` vectorised gathers): few numpy calls, so the fastest way
    for short streams, but work and memory grow as ``bits * log(count)``."""
    symbol_at, size_at = _lookup_every_bit(data, lengths)
    starts = _follow_chain(size_at, count)
    nbits = 8 * len(data)
    if starts[-1] >= nbits or not size_at[starts].all():
        raise ValueError("invalid code in stream")
    return _check_end(data, lengths, count, symbol_at[starts], int(starts[-1]) + int(size_at[starts[-1]]))


def _lookup_every_bit(data: bytes, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every bit position of ``data``: the symbol whose code starts there and its length
    (0 where the bits are no valid code)."""
    top = int(lengths.max())
    table_symbol, table_size = _first_code_tables(lengths, top)
    raw = np.frombuffer(data + b"\0\0\0", dtype=np.uint8).astype(np.uint32)
    words = raw[:-3] << 24 | raw[1:-2] << 16 | raw[2:-1] << 8 | raw[3:]
    windows = (words[:, None] << np.arange(8, dtype=np.uint32)) >> np.uint32(32 - top)
    windows = windows.reshape(-1)
    return table_symbol[windows], table_size[windows]


def _follow_chain(size_at: np.ndarray, count: int) -> np.ndarray:
    """Start positions of the first ``count`` codes: 0, then p + size_at[p], by pointer doubling.
    Invalid positions (size 0) and positions past the end jump to a sentinel (= len(size_at))."""
    n = size_at.size
    index_type = np.int32 if n < 2**31 - 64 else np.int64
    jump = np.arange(n + 1, dtype=index_type)
    jump[:n] += size_at.astype(index_type)
    jump[:n][size_at == 0] = n
    np.minimum(jump, n, out=jump)
    starts = np.zeros(1, dtype=index_type)
    while starts.size < count:
        starts = np.concatenate([starts, jump[starts]])
        if starts.size < count:
            jump = jump[jump]
    return starts[:count]


def entropy_bits(symbols: np.ndarray) -> float:
    """Shannon entropy of the empirical distribution of ``symbols`` (non-negative ints), bits/symbol."""
    symbols = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum())
