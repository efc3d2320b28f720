"""Scale-out over NATS (docs/cluster.md): the simulation publishes, ``visionflow relay`` serves.

- :mod:`.wire`: subjects, message headers and the request/reply bodies (sans-IO);
- :mod:`.chain`: frames on the stream: what the publisher sends per tick (a keyframe, or an
  exact delta against the tick it sent last) and how a relay rebuilds the snapshot (sans-IO);
- :mod:`.link`: one NATS connection at a time, reconnected with stamina, with its health;
- :mod:`.publisher`: the service's side, a :class:`~visionflow.web.hub.FrameTap` and a
  supervised child that also answers the relays' drags and API requests;
- :mod:`.relay`: ``visionflow relay``: the same ``/wss`` endpoint, hub, probes and viewer page,
  fed from NATS instead of a physics engine.

nats-py runs on asyncio only, so both sides need the asyncio backend.
"""
