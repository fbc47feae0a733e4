-- Hosts (deployq.hostid): a unix:// build server is the engine of the host that registered it,
-- so only that host's workers claim jobs for it; every worker says which host it runs on.
-- NULL owner: any host (tcp:// and ssh:// engines, and unix:// ones registered before this).
ALTER TABLE build_servers ADD COLUMN host_id text;
ALTER TABLE workers ADD COLUMN host_id text;
