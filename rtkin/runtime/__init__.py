"""Processes and sockets only: the ZeroMQ transport, one thin node per process (sync, IK,
recorder, cameras), the supervisor that starts and stops them, and the run configuration that
composes every stage's settings.

May import the stages, rtkin.io, rtkin.sim and rtkin.core; never rtkin.clients or rtkin.offline.
"""
