"""A bounded, ordered producer/consumer pipeline: decoding and writing overlap with the network.

Each stage runs in its own thread and hands its results to the next through a queue of at most ``depth``
items, so while the network works on image *i*, image *i + 1* is being read and resized and image *i − 1*
post-processed and written. Memory stays bounded (at most about ``depth`` items per stage in flight, which
matters for 24-megapixel inputs) and results come out in input order because every stage is one thread
taking items first in, first out. Decoders (OpenCV, Pillow), ONNX Runtime and PyTorch release the GIL while
they work, so the stages really run at the same time.

A stage that raises one of the ``expected`` exception types fails that item only: the item skips the later
stages and comes out with the exception in place of a result, in its place in the order. Any other exception
stops the pipeline and is re-raised to the consumer (a bug must not be reported as a bad input file).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

_END = object()


@dataclass
class _Failed:
    error: BaseException


class _Crash(Exception):
    """Carries an unexpected exception from a stage thread to the consumer."""


def run_ordered(items: Iterable[Any], stages: Sequence[Callable[[Any, Any], Any]], *, depth: int = 2,
                expected: tuple[type[BaseException], ...] = ()) -> Iterator[tuple[Any, Any]]:
    """Push every item through ``stages`` in separate threads; yield ``(item, result)`` in input order.

    Parameters
    ----------
    items : the inputs (consumed lazily by the first stage's thread).
    stages : ``f(item, value) -> value`` functions; the first gets ``value = None``, each later one the previous
        stage's result.
    depth : capacity of each queue between stages (≥ 1); bounds the items in flight.
    expected : exception types that fail one item. Such an item yields ``(item, exception)``.

    Yields
    ------
    ``(item, last stage's result)`` or ``(item, exception)``, in the order of ``items``.

    Raises
    ------
    ValueError
        If ``depth`` < 1 or there are no stages.
    Exception
        Whatever unexpected exception a stage raised (after stopping the other threads).
    """
    if depth < 1 or not stages:
        raise ValueError(f"need depth >= 1 and at least one stage (got depth {depth}, {len(stages)} stages)")
    stop = threading.Event()
    queues = [queue.Queue(maxsize=depth) for _ in stages]

    def put(q: queue.Queue, value) -> bool:
        while not stop.is_set():
            try:
                q.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue):
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def work(k: int) -> None:
        source = iter(items) if k == 0 else None
        try:
            while not stop.is_set():
                if k == 0:
                    item = next(source, _END)
                    value = None
                else:
                    packet = get(queues[k - 1])
                    if packet is _END:
                        break
                    if isinstance(packet, _Crash):  # an earlier stage crashed: pass it on and stop
                        put(queues[k], packet)
                        return
                    item, value = packet
                if item is _END:
                    break
                if not isinstance(value, _Failed):
                    try:
                        value = stages[k](item, value)
                    except expected as exc:
                        value = _Failed(exc)
                if not put(queues[k], (item, value)):
                    return
        except BaseException as exc:
            put(queues[k], _Crash(exc))
            return
        put(queues[k], _END)

    threads = [threading.Thread(target=work, args=(k,), daemon=True, name=f"dermoseg-stage-{k}")
               for k in range(len(stages))]
    for t in threads:
        t.start()
    try:
        while True:
            packet = queues[-1].get()
            if packet is _END:
                break
            if isinstance(packet, _Crash):
                raise packet.args[0]
            item, value = packet
            yield item, (value.error if isinstance(value, _Failed) else value)
    finally:
        stop.set()
        for t in threads:
            t.join()
