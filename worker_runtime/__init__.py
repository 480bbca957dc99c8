"""What a worker needs and nothing more: the store, the worker loop, invokers, serialization.

This package never imports ``daskless`` (function containers stay small and start fast). It
depends only on ``scheduler`` for shared error types and on the libraries a task needs at run time.
"""
