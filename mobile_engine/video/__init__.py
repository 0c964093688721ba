"""Offline video through a plan on a Dask cluster (``mobile-engine video``).

What runs where:

    client (the user's machine)                   workers (one ``dask worker`` per machine)
    source.py   check the file; read compressed   task.py   decode the segment's packets, run
                packets only; split the video               the effect on each frame (Sessions
                into segments at keyframes                  loaded once per worker), encode
    job.py      compile the plans; send them once           the frames; return the packets
                per worker by hash; keep a bounded  effect.py what is done to one frame (the
                window of segments in flight                demo's effects, or any image plan)
    writer.py   join the returned packets in order,
                copy the audio packets unchanged
    encoder.py  the output codec and its settings (checked on the client, used on workers)

Frames never cross the network: segments go out compressed and come back compressed.
"""
