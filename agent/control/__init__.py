"""The control socket: ``protocol`` (wire format), ``server`` (asyncio, in the
daemon) and ``client`` (blocking, in the CLI).

Kept as separate modules so the CLI's client path never imports asyncio.
"""
