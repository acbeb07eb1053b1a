"""Find stored events, and replay them with the worker's own code: one, or in bulk by filter.

Replaying an event = putting it back in the outbox (attempts reset, available now) and applying
it with `reconciler.drain.apply_batch(..., replay=True)`, the function a worker runs, so its
audit entries have source `replay`. Today's code re-parses the stored delivery: a quarantined
event that today's code understands is applied; one it still does not understand stays
quarantined with today's parse error. An event that cannot be applied at all (its key is not in
the keyring, its payload was purged) is marked `failed` again and left to the workers' retries.

Every replay computes its *effect*: the sessions and users whose (status, decided_by) changed,
from what to what, read before and after the apply in the same transaction. A dry run is the
same work in a transaction that is rolled back, so it shows what a real replay would do, not a
guess. A bulk replay is a `replays` row worked through in ascending event id order, one batch per
transaction; the batch's effects, the row's cursor (`last_event_id`) and its running summary
commit together, so a run that stops anywhere resumes after its last committed batch and applies
nothing twice.

Lock order (no deadlock with workers): replay row → outbox rows → events → sessions (SKIP LOCKED)
→ users → audit head, which is taken last by `apply_batch`. A dry run applies all its events in
one `apply_batch` call for the same reason.

The modules, each imported by its full name (this package imports none of them):
- `reconciler.event_queries` (beside the package, so that listing events stays light): filters,
  cursors, limits, the event list;
- `effects`: what a replay changed, folded batch by batch (`Effect`);
- `batch`: replay a batch of events in the caller's transaction (`replay_batch`);
- `execution`: replay one event, dry-run a filter, work a bulk replay batch after batch;
- `runs`: the `replays` rows: create, lock, read, list, mark failed;
- `queueing`: the RQ hand-off: queue a run, the job, resuming stale runs;
- `shaping`: what the API, console and CLI show of an event and of a replay run;
- `operator_audit`: the audit entry of an operator action.
"""
