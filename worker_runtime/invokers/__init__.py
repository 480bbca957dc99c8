"""Invokers: how a run's invocations reach workers on each platform.

Every invoker implements :class:`daskless.worker_runtime.context.Invoker`; workers use the same kind
of invoker for fan-out that the client used for the entry invocations, so no invocation ever goes
back through the client.
"""
