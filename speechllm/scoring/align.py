"""Levenshtein alignment with NIST sclite's costs and tie-breaking.

sclite (``net_dp.c``, ``wwd_WORD``) scores in 32-bit floats: correct 0, substitution 4,
insertion or deletion 3, inserting or deleting the NULL word '@' 0.001, '@' against
'@' 1.  Each cell prefers the diagonal (correct/substitution) when it is no worse than
both other moves, then a deletion when strictly cheaper than the insertion, else the
insertion.  The back-trace starts from the last cell.

Many utterances of similar length are aligned at once in padded numpy arrays, so
Python loops over the rows of a batch instead of over the cells of every utterance:
with the usual integer costs a whole DP row is one vectorised step (the insertion
chain along the row is a running minimum); when a NULL word brings the 0.001 costs in,
the batch is filled one anti-diagonal at a time in float32 instead, exactly as sclite
adds them.  Padding never leaks into real cells: a cell only depends on cells with
smaller indices.  Word ids must be >= 0 (-1 and -2 pad the two sides).

The result for one utterance is a string of edit codes, read left to right:
``C`` correct, ``S`` substitution, ``D`` deletion, ``I`` insertion, and for NULL words
(consumed but not reported, as sclite does) ``d`` a deleted '@', ``i`` an inserted '@',
``n`` '@' aligned with '@'.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CORRECT, SUBSTITUTION, DELETION, INSERTION = "C", "S", "D", "I"
NULL_DELETION, NULL_INSERTION, NULL_MATCH = "d", "i", "n"
CONSUMES_REF = frozenset("CSDdn")
CONSUMES_HYP = frozenset("CSIin")

_DIAG, _DEL, _INS = 0, 1, 2
_COST_SUB = np.float32(4.0)
_COST_INS_DEL = np.float32(3.0)
_COST_NULL_INS_DEL = np.float32(0.001)
_COST_NULL_SUB = np.float32(1.0)
_CELLS_PER_BATCH = 3_000_000

# edit code for (move, words equal, ref is '@', hyp is '@'), as bytes for fast decoding
_CODE = np.zeros((3, 2, 2, 2), dtype=np.uint8)
_CODE[_DIAG, 0] = ord(SUBSTITUTION)
_CODE[_DIAG, 1] = ord(CORRECT)
_CODE[_DIAG, :, 1, 1] = ord(NULL_MATCH)
_CODE[_DEL] = ord(DELETION)
_CODE[_DEL, :, 1, :] = ord(NULL_DELETION)
_CODE[_INS] = ord(INSERTION)
_CODE[_INS, :, :, 1] = ord(NULL_INSERTION)


def _batches(ref_lens: np.ndarray, hyp_lens: np.ndarray) -> list[np.ndarray]:
    """Group utterances of similar shape, at most ``_CELLS_PER_BATCH`` DP cells each."""
    order = np.lexsort((hyp_lens, ref_lens))
    batches, members, max_ref, max_hyp = [], [], 0, 0
    for utt in order.tolist():
        new_ref, new_hyp = max(max_ref, int(ref_lens[utt])), max(max_hyp, int(hyp_lens[utt]))
        if members and (len(members) + 1) * (new_ref + 1) * (new_hyp + 1) > _CELLS_PER_BATCH:
            batches.append(np.array(members))
            members, new_ref, new_hyp = [], int(ref_lens[utt]), int(hyp_lens[utt])
        members.append(utt)
        max_ref, max_hyp = new_ref, new_hyp
    if members:
        batches.append(np.array(members))
    return batches


def _pad(sequences: Sequence[np.ndarray], length: int, fill: int) -> np.ndarray:
    out = np.full((len(sequences), length), fill, dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, :len(seq)] = seq
    return out


def _costs(ref: np.ndarray, hyp: np.ndarray, null_id: int) -> tuple[np.ndarray, ...]:
    """Equal-word matrix and float32 substitution, deletion and insertion costs."""
    equal = ref[:, :, None] == hyp[:, None, :]
    ref_null, hyp_null = ref == null_id, hyp == null_id
    sub_cost = np.where(equal, np.float32(0.0), _COST_SUB).astype(np.float32)
    sub_cost[ref_null[:, :, None] & hyp_null[:, None, :]] = _COST_NULL_SUB
    del_cost = np.where(ref_null, _COST_NULL_INS_DEL, _COST_INS_DEL).astype(np.float32)
    ins_cost = np.where(hyp_null, _COST_NULL_INS_DEL, _COST_INS_DEL).astype(np.float32)
    return equal, sub_cost, del_cost, ins_cost


def _fill_diagonals(ref: np.ndarray, hyp: np.ndarray, null_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact float32 DP, one anti-diagonal at a time (any costs, '@' included)."""
    batch, n_ref = ref.shape
    n_hyp = hyp.shape[1]
    equal, sub_cost, del_cost, ins_cost = _costs(ref, hyp, null_id)
    dist = np.zeros((batch, n_ref + 1, n_hyp + 1), dtype=np.float32)
    choice = np.empty((batch, n_ref + 1, n_hyp + 1), dtype=np.uint8)
    dist[:, 1:, 0] = np.cumsum(del_cost, axis=1, dtype=np.float32)
    dist[:, 0, 1:] = np.cumsum(ins_cost, axis=1, dtype=np.float32)
    choice[:, :, 0] = _DEL
    choice[:, 0, :] = _INS
    for diag in range(2, n_ref + n_hyp + 1):
        rows = np.arange(max(1, diag - n_hyp), min(n_ref, diag - 1) + 1)
        cols = diag - rows
        sub = dist[:, rows - 1, cols - 1] + sub_cost[:, rows - 1, cols - 1]
        dele = dist[:, rows - 1, cols] + del_cost[:, rows - 1]
        ins = dist[:, rows, cols - 1] + ins_cost[:, cols - 1]
        take_sub = (sub <= dele) & (sub <= ins)
        take_del = ~take_sub & (dele < ins)
        dist[:, rows, cols] = np.where(take_sub, sub, np.where(take_del, dele, ins))
        choice[:, rows, cols] = np.where(take_sub, _DIAG, np.where(take_del, _DEL, _INS))
    return choice, equal


def _fill_rows(ref: np.ndarray, hyp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer DP one reference row at a time (costs 0/3/4 only, no '@').

    Within a row the insertion chain D[j] = min(A[j], D[j-1] + 3) is a running
    minimum of A[j] - 3j, shifted back by 3j, so the row needs no Python loop.
    """
    batch, n_ref = ref.shape
    n_hyp = hyp.shape[1]
    equal = ref[:, :, None] == hyp[:, None, :]
    sub_cost = np.where(equal, 0, int(_COST_SUB)).astype(np.int32)
    ramp = int(_COST_INS_DEL) * np.arange(n_hyp + 1, dtype=np.int32)
    choice = np.empty((batch, n_ref + 1, n_hyp + 1), dtype=np.uint8)
    choice[:, 0, :] = _INS
    choice[:, 1:, 0] = _DEL
    prev = np.broadcast_to(ramp, (batch, n_hyp + 1))
    best = np.empty((batch, n_hyp + 1), dtype=np.int32)
    for row in range(1, n_ref + 1):
        sub = prev[:, :-1] + sub_cost[:, row - 1, :]
        dele = prev[:, 1:] + ramp[1]
        best[:, 0] = ramp[1] * row
        np.minimum(sub, dele, out=best[:, 1:])
        np.minimum.accumulate(best - ramp, axis=1, out=best)
        best += ramp
        ins = best[:, :-1] + ramp[1]
        take_sub = (sub <= dele) & (sub <= ins)
        take_del = ~take_sub & (dele < ins)
        choice[:, row, 1:] = np.where(take_sub, _DIAG, np.where(take_del, _DEL, _INS))
        prev = best.copy()
    return choice, equal


def _trace_batch(choice: np.ndarray, equal: np.ndarray, ref: np.ndarray, hyp: np.ndarray,
                 ref_lens: np.ndarray, hyp_lens: np.ndarray, null_id: int) -> list[str]:
    """Back-trace every utterance of a batch at once; return its edit strings."""
    batch = len(ref_lens)
    rows, cols = ref_lens.copy(), hyp_lens.copy()
    steps = int((ref_lens + hyp_lens).max(initial=0))
    codes = np.zeros((batch, steps), dtype=np.uint8)
    index = np.arange(batch)
    for step in range(steps):
        active = (rows > 0) | (cols > 0)
        if not active.any():
            break
        move = choice[index, rows, cols]
        r_word, h_word = np.maximum(rows - 1, 0), np.maximum(cols - 1, 0)
        same = equal[index, r_word, h_word] & (move == _DIAG)
        ref_is_null = (ref[index, r_word] == null_id) & (move != _INS)
        hyp_is_null = (hyp[index, h_word] == null_id) & (move != _DEL)
        code = _CODE[move, same.astype(np.intp), ref_is_null.astype(np.intp), hyp_is_null.astype(np.intp)]
        codes[:, step] = np.where(active, code, 0)
        rows = np.where(active & (move != _INS), rows - 1, rows)
        cols = np.where(active & (move != _DEL), cols - 1, cols)
    return [row[row != 0][::-1].tobytes().decode("ascii") for row in codes]


def align_many(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], null_id: int = -3) -> list[str]:
    """Align ``(ref ids, hyp ids)`` pairs of word ids; return one edit string per pair.

    Words are compared by id, so map equal words to equal ids; ``null_id`` marks '@'.
    """
    refs = [np.asarray(ref, dtype=np.int64) for ref, _ in pairs]
    hyps = [np.asarray(hyp, dtype=np.int64) for _, hyp in pairs]
    ref_lens = np.array([len(r) for r in refs], dtype=np.int64)
    hyp_lens = np.array([len(h) for h in hyps], dtype=np.int64)
    results: list[str] = [""] * len(pairs)
    for members in _batches(ref_lens, hyp_lens):
        # at least one (padding) word per side keeps the back-trace lookups in range;
        # distinct pad values for ref and hyp so padding never looks "correct"
        ref = _pad([refs[m] for m in members], max(1, int(ref_lens[members].max())), fill=-1)
        hyp = _pad([hyps[m] for m in members], max(1, int(hyp_lens[members].max())), fill=-2)
        if (ref == null_id).any() or (hyp == null_id).any():
            choice, equal = _fill_diagonals(ref, hyp, null_id)
        else:
            choice, equal = _fill_rows(ref, hyp)
        codes = _trace_batch(choice, equal, ref, hyp, ref_lens[members], hyp_lens[members], null_id)
        for member, code in zip(members, codes):
            results[member] = code
    return results


def align(ref: Sequence[int], hyp: Sequence[int], null_id: int = -3) -> str:
    """Align one pair of word-id sequences (see :func:`align_many`)."""
    return align_many([(ref, hyp)], null_id)[0]


def count_edits(codes: str) -> tuple[int, int, int, int]:
    """(correct, substitutions, deletions, insertions) of an edit string."""
    return codes.count(CORRECT), codes.count(SUBSTITUTION), codes.count(DELETION), codes.count(INSERTION)


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, int]:
    """(WER in %, reference words) of normalised texts, with the alignment of the sclite-identical scorer."""
    vocab: dict[str, int] = {}
    ids = [([vocab.setdefault(w, len(vocab)) for w in r.split()], [vocab.setdefault(w, len(vocab)) for w in h.split()])
           for r, h in zip(refs, hyps)]
    edits = [count_edits(codes) for codes in align_many(ids)]
    words = sum(len(r) for r, _ in ids)
    return 100.0 * sum(s + d + i for _, s, d, i in edits) / max(words, 1), words
