"""Why a run is not starting, per platform: ``queueing/<platform>.py`` words the diagnosis from the reads its
hook's ``read_wait_cause`` makes (``hooks/<platform>_waiting.py``). The thresholds are watched by ``QueueWatch``
(``run_watch.py``), over the timing each decoded state carries (``statuses/<platform>.py``)."""
