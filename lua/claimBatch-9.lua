--[[
  Claims one batch for a worker, in one round trip: checks the job state,
  reclaims the batch whose lease ran out longest ago (or, if none has, reads a
  new one with XREADGROUP), counts the delivery as an attempt, dead-letters a
  batch delivered more than max_attempts times instead of handing it out,
  issues a fresh fencing token and returns the batch's records.

  Leases: every claimed batch has an entry in the leases sorted set, scored by
  the server time (ms) of its claim or last heartbeat. The entry with the
  lowest score is the one that went stale first, so a claim looks at that one
  entry only (ZRANGE 0 0, O(log N)) and, when it is older than the stale
  timeout, moves that exact queue entry to the caller (XCLAIM by id, min idle
  0: the lease already decided). A dead batch is therefore reclaimed by the
  first claim after its timeout, however many live batches are pending ahead
  of it (XAUTOCLAIM from 0-0 scans a bounded slice of the pending list and,
  with its cursor thrown away, never reaches entries behind live ones).
  Attempts are counted on the batches hash (a:<index>), not by the stream's
  delivery count.

  A dead-lettered batch is FAILED; its records count as failed and stay
  stored so that failed_records can list them. A batch whose records are gone
  from the records hash (evicted, or deleted by hand) is dead-lettered at
  once, as lost: it cannot be processed, and retrying it would only fail
  again. When nothing is claimable the job may be finalized here (its last
  batch was just dead-lettered), and the caller's consumer is dropped from
  the group if it holds nothing.

  Failure thresholds: dead-lettered records count as failed; when they make the
  job's failed records exceed a tolerated count or percentage (the job's own or
  the caller's, ARGV[7] and ARGV[8]), the job moves to FAILED here and the reply
  says finalized. A claim also notes its worker in the workers set (dropping the
  ones not heard of within the stale timeout) and keeps the stale timeout on
  the job (stale_ms) for status readers.

  Redriven batches (retry_failed) hold records from anywhere in the source: their
  x:<index> (JSON list) maps each position, counted from the batch's first index,
  to the record's index in the source; it travels with the claim.

  Repeats: a call is named by its request id (ARGV[6]). A repeat of a call
  whose reply was lost answers as the first did: the same batch, token and
  attempt while the caller still holds that batch (no second batch is taken),
  or the same NO_PENDING_BATCHES reply (dead-lettered batches, finalized flag)
  when the first dead-lettered or finalized. The record of the last such call
  is kept per worker (w:<worker> on the batches hash) until the batch is
  committed, handed back or released.

  Input:
    KEYS[1] job hash
    KEYS[2] queue stream (consumer group ARGV[1])
    KEYS[3] records hash
    KEYS[4] batches hash
    KEYS[5] failed hash
    KEYS[6] events stream
    KEYS[7] unique hash (a unique value's digest -> index of its first record)
    KEYS[8] leases sorted set (batch index -> ms of its claim or last heartbeat)
    KEYS[9] workers sorted set (worker id -> ms it was last heard of: claim, heartbeat, commit)

    ARGV[1] consumer group name
    ARGV[2] worker id (consumer name)
    ARGV[3] stale timeout in ms
    ARGV[4] max attempts per batch
    ARGV[5] retention in ms, or "" to keep the job forever
    ARGV[6] request id (unique per call; a retried send repeats it)
    ARGV[7] tolerated failed records, or "" for no limit
    ARGV[8] tolerated failed records in percent of total_records, or "" for no limit
    ARGV[9] the longest records (bytes) returned in the reply, or "" for no limit:
            longer ones are left for the caller to read with a plain HGET

  Output:
    {"OK", batch_index, token, attempt, payload, columns, total_records, dead_lettered,
     duplicates, indexes}  payload: the batch's records, or their length in bytes
                           (an integer) when longer than ARGV[9];
                           duplicates: the batch's d:<index> JSON from storeBatch, or "";
                           indexes: its x:<index> JSON (a redriven batch), or ""
    {"NO_PENDING_BATCHES", state, finalized (0|1), dead_lettered, summary}
    {"JOB_NOT_FOUND"}
    {"JOB_NOT_PROCESSING", state}
  where dead_lettered is a flat list {batch_index, attempts, ...} of the
  batches this call dead-lettered (attempts 0: its records were missing), and
  summary the jobSummary include's figures (meaningful when finalized is 1).
]]
--- @include "includes/claimNext"

return claimNext(KEYS, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
  tonumber(ARGV[9]))
