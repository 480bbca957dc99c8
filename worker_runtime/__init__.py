"""What a worker needs and nothing more: the store, the worker loop, invokers, serialization.

This package never imports the client modules of ``daskless`` (engine, plan, backends,
reports), so function containers stay small and start fast. It depends only on
``daskless.scheduler`` for shared types and on the libraries a task needs at run time. It
installs as ``daskless.worker_runtime``, so importing it first runs ``daskless/__init__.py``,
which is cheap on purpose and loads the ``daskless.*`` configuration defaults: every worker,
the gateway and the Lambda handler read settings with those defaults in place.
"""
