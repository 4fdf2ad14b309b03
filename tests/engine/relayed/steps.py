"""A public call whose steps warn, as a metric's do."""

from camscope.engine.relay import said_once, said_so_far, warn


@said_once
def steps(texts, keys=None):
    for index, text in enumerate(texts):
        warn(text, key=None if keys is None else keys[index])
    return len(texts)


@said_once
def outer(texts, keys=None):
    return steps(texts, keys) + steps(texts, keys)


@said_once
def recorded(texts):
    outer(texts)
    return said_so_far()
