-- Zero-config build overrides per app (deployq app add --install-cmd/--build-cmd/
-- --start-cmd/--runtime-version): they replace what the build plan detected.
ALTER TABLE apps
    ADD COLUMN install_cmd     text CHECK (install_cmd <> ''),
    ADD COLUMN build_cmd       text CHECK (build_cmd <> ''),
    ADD COLUMN start_cmd       text CHECK (start_cmd <> ''),
    ADD COLUMN runtime_version text CHECK (runtime_version <> '');
