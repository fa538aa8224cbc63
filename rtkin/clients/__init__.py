"""Programs that read a live run: the typed Subscriber, the browser dashboard and its web assets,
the terminal table (watch) and the Lab Streaming Layer bridge.

May import rtkin.core and rtkin.runtime (transport, configuration).
"""
