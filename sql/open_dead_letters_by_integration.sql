-- Open dead letters of one organization, per integration, stream and error: how many, how old,
-- when the next replay is due. Open = pending or retrying (what the health model and the
-- dead-letter check count); quarantined letters are listed too, apart, since no replay picks
-- them up until someone runs `sync-pipelines dead-letters requeue`.
-- Parameters: :organization_id.
-- Then: `sync-pipelines dead-letters list --organization ... --integration ... --status pending`,
-- `sync-pipelines replay ...` or `sync-pipelines quarantine ...`.

SELECT integration_id, provider, stream, status, error_type,
       count(*) AS letters,
       max(attempts) AS max_attempts_made,
       min(first_failed_at) AS oldest_failure,
       max(last_failed_at) AS latest_failure,
       min(next_attempt_at) AS next_replay_due
FROM dead_letters
WHERE organization_id = :organization_id
  AND status IN ('pending', 'retrying', 'quarantined')
GROUP BY integration_id, provider, stream, status, error_type
ORDER BY CASE WHEN status = 'quarantined' THEN 1 ELSE 0 END, letters DESC, integration_id,
         stream;
