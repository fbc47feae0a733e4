-- Mutual TLS to tcp:// build servers: the paths of the CA, client certificate and client key
-- (read on each worker host when it connects; the key itself is never stored here).
ALTER TABLE build_servers
    ADD COLUMN tls_ca text,
    ADD COLUMN tls_cert text,
    ADD COLUMN tls_key text,
    ADD CONSTRAINT build_servers_tls_all_or_none CHECK (
        (tls_ca IS NULL) = (tls_cert IS NULL) AND (tls_cert IS NULL) = (tls_key IS NULL)
    );
