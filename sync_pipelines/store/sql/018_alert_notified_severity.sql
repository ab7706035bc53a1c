-- The severity an incident was last announced at: a condition that worsens from warning to
-- critical is announced again at once ("escalated"), without waiting out the cooldown that
-- holds back repeats of what on-call already knows. Incidents already announced keep the
-- severity they were announced at, so none is re-sent by this migration.
ALTER TABLE alert_incidents ADD COLUMN notified_severity TEXT;
UPDATE alert_incidents SET notified_severity = severity WHERE last_notified_at IS NOT NULL;
