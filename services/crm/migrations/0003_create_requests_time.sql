-- An index by creation time, so that the CRM servers' purge of request ids
-- past their retention (crm_server --create_request_retention_hours) reads
-- only the rows it deletes.

ALTER TABLE create_requests ADD INDEX create_requests_create_time (create_time);
