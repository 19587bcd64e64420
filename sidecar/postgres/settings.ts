// Which startup settings a client may pass through the enforcer. The session runs as the
// Connection's user, so the danger is a setting that changes who it acts as, one that only a
// superuser may set (harmless for an ordinary role, which the server refuses, but not for a
// Connection whose user is a superuser), and one that makes the server read SQL text otherwise
// than the enforcer's parser does. Everything else is forwarded, custom (dotted) settings
// included, and the server answers as itself (an unknown name is its FATAL 42704).

import { demotesPgCatalog } from '../policy/sql-text.ts';

/** Settings that would change who the session acts as. */
const identitySettings = new Set(['role', 'session_authorization', 'session_replication_role']);

/**
 * PostgreSQL 15's settings that an ordinary role cannot set at connection start: pg_settings
 * context superuser, superuser-backend, backend, sighup, postmaster and internal (lower case).
 * A test compares it with the server's catalog.
 */
export const privilegedSettings: ReadonlySet<string> = new Set([
  'allow_in_place_tablespaces',
  'allow_system_table_mods',
  'archive_cleanup_command',
  'archive_command',
  'archive_library',
  'archive_mode',
  'archive_timeout',
  'authentication_timeout',
  'autovacuum',
  'autovacuum_analyze_scale_factor',
  'autovacuum_analyze_threshold',
  'autovacuum_freeze_max_age',
  'autovacuum_max_workers',
  'autovacuum_multixact_freeze_max_age',
  'autovacuum_naptime',
  'autovacuum_vacuum_cost_delay',
  'autovacuum_vacuum_cost_limit',
  'autovacuum_vacuum_insert_scale_factor',
  'autovacuum_vacuum_insert_threshold',
  'autovacuum_vacuum_scale_factor',
  'autovacuum_vacuum_threshold',
  'autovacuum_work_mem',
  'backtrace_functions',
  'bgwriter_delay',
  'bgwriter_flush_after',
  'bgwriter_lru_maxpages',
  'bgwriter_lru_multiplier',
  'block_size',
  'bonjour',
  'bonjour_name',
  'checkpoint_completion_target',
  'checkpoint_flush_after',
  'checkpoint_timeout',
  'checkpoint_warning',
  'cluster_name',
  'commit_delay',
  'compute_query_id',
  'config_file',
  'data_checksums',
  'data_directory',
  'data_directory_mode',
  'data_sync_retry',
  'db_user_namespace',
  'deadlock_timeout',
  'debug_assertions',
  'debug_discard_caches',
  'dynamic_library_path',
  'dynamic_shared_memory_type',
  'event_source',
  'extension_destdir',
  'external_pid_file',
  'fsync',
  'full_page_writes',
  'hba_file',
  'hot_standby',
  'hot_standby_feedback',
  'huge_page_size',
  'huge_pages',
  'ident_file',
  'ignore_checksum_failure',
  'ignore_invalid_pages',
  'ignore_system_indexes',
  'in_hot_standby',
  'integer_datetimes',
  'jit_debugging_support',
  'jit_dump_bitcode',
  'jit_profiling_support',
  'jit_provider',
  'krb_caseins_users',
  'krb_server_keyfile',
  'lc_collate',
  'lc_ctype',
  'lc_messages',
  'listen_addresses',
  'lo_compat_privileges',
  'log_autovacuum_min_duration',
  'log_checkpoints',
  'log_connections',
  'log_destination',
  'log_directory',
  'log_disconnections',
  'log_duration',
  'log_error_verbosity',
  'log_executor_stats',
  'log_file_mode',
  'log_filename',
  'log_hostname',
  'log_line_prefix',
  'log_lock_waits',
  'log_min_duration_sample',
  'log_min_duration_statement',
  'log_min_error_statement',
  'log_min_messages',
  'log_parameter_max_length',
  'log_parser_stats',
  'log_planner_stats',
  'log_recovery_conflict_waits',
  'log_replication_commands',
  'log_rotation_age',
  'log_rotation_size',
  'log_startup_progress_interval',
  'log_statement',
  'log_statement_sample_rate',
  'log_statement_stats',
  'log_temp_files',
  'log_timezone',
  'log_transaction_sample_rate',
  'log_truncate_on_rotation',
  'logging_collector',
  'max_connections',
  'max_files_per_process',
  'max_function_args',
  'max_identifier_length',
  'max_index_keys',
  'max_locks_per_transaction',
  'max_logical_replication_workers',
  'max_pred_locks_per_page',
  'max_pred_locks_per_relation',
  'max_pred_locks_per_transaction',
  'max_prepared_transactions',
  'max_replication_slots',
  'max_slot_wal_keep_size',
  'max_stack_depth',
  'max_standby_archive_delay',
  'max_standby_streaming_delay',
  'max_sync_workers_per_subscription',
  'max_wal_senders',
  'max_wal_size',
  'max_worker_processes',
  'min_dynamic_shared_memory',
  'min_wal_size',
  'old_snapshot_threshold',
  'port',
  'post_auth_delay',
  'pre_auth_delay',
  'primary_conninfo',
  'primary_slot_name',
  'promote_trigger_file',
  'recovery_end_command',
  'recovery_init_sync_method',
  'recovery_min_apply_delay',
  'recovery_prefetch',
  'recovery_target',
  'recovery_target_action',
  'recovery_target_inclusive',
  'recovery_target_lsn',
  'recovery_target_name',
  'recovery_target_time',
  'recovery_target_timeline',
  'recovery_target_xid',
  'remove_temp_files_after_crash',
  'restart_after_crash',
  'restore_command',
  'segment_size',
  'server_encoding',
  'server_version',
  'server_version_num',
  'session_preload_libraries',
  'session_replication_role',
  'shared_buffers',
  'shared_memory_size',
  'shared_memory_size_in_huge_pages',
  'shared_memory_type',
  'shared_preload_libraries',
  'ssl',
  'ssl_ca_file',
  'ssl_cert_file',
  'ssl_ciphers',
  'ssl_crl_dir',
  'ssl_crl_file',
  'ssl_dh_params_file',
  'ssl_ecdh_curve',
  'ssl_key_file',
  'ssl_library',
  'ssl_max_protocol_version',
  'ssl_min_protocol_version',
  'ssl_passphrase_command',
  'ssl_passphrase_command_supports_reload',
  'ssl_prefer_server_ciphers',
  'superuser_reserved_connections',
  'synchronous_standby_names',
  'syslog_facility',
  'syslog_ident',
  'syslog_sequence_numbers',
  'syslog_split_messages',
  'temp_file_limit',
  'trace_recovery_messages',
  'track_activities',
  'track_activity_query_size',
  'track_commit_timestamp',
  'track_counts',
  'track_functions',
  'track_io_timing',
  'track_wal_io_timing',
  'unix_socket_directories',
  'unix_socket_group',
  'unix_socket_permissions',
  'update_process_title',
  'vacuum_defer_cleanup_age',
  'wal_block_size',
  'wal_buffers',
  'wal_compression',
  'wal_consistency_checking',
  'wal_decode_buffer_size',
  'wal_init_zero',
  'wal_keep_size',
  'wal_level',
  'wal_log_hints',
  'wal_receiver_create_temp_slot',
  'wal_receiver_status_interval',
  'wal_receiver_timeout',
  'wal_recycle',
  'wal_retrieve_retry_interval',
  'wal_segment_size',
  'wal_sync_method',
  'wal_writer_delay',
  'wal_writer_flush_after',
  'zero_damaged_pages',
]);

/**
 * Client encodings whose multibyte characters contain ASCII bytes (a trailing 0x5C is a
 * backslash to the enforcer and part of a character to the server): the server accepts them
 * from clients only. The enforcer reads SQL text as UTF-8, so it refuses them.
 */
export const unsafeClientEncodings: ReadonlySet<string> = new Set([
  'SJIS',
  'SHIFT_JIS_2004',
  'BIG5',
  'GBK',
  'UHC',
  'GB18030',
  'JOHAB',
]);

/** Why the enforcer refuses a startup setting, or undefined to forward it. */
export function settingRefusal(name: string, value: string): string | undefined {
  const lower = name.toLowerCase();
  // Built-in names stop meaning the built-ins the SQL analysis trusts.
  if (lower === 'search_path' && demotesPgCatalog(value))
    return 'Airlock does not let a client put a schema before pg_catalog in search_path';
  if (identitySettings.has(lower))
    return `Airlock does not let a client set ${name}: the session runs as the Connection's user`;
  if (privilegedSettings.has(lower))
    return `Airlock does not let a client set ${name}: only a superuser or the server's configuration may set it`;
  return undefined;
}

/**
 * How the server reads the client's SQL text, from what it reports in ParameterStatus (a
 * role's or database's defaults count too). The enforcer reads text as UTF-8; the server reads
 * the same characters only when it takes the bytes as UTF-8 (client_encoding UTF8, or SQL_ASCII
 * on a UTF8 database, which the server checks as UTF-8) or compares them as raw bytes (a
 * SQL_ASCII database). Any other client encoding makes the server read a name the enforcer
 * cannot (LATIN1's 0xE9 is é to the server and no character to a UTF-8 reader), so a rule
 * naming an object outside ASCII could be passed by.
 */
export class ServerReading {
  #client = 'UTF8';
  #server = 'UTF8';
  #conforming = true;

  /** Takes in one reported setting; the settings that do not decide reading are ignored. */
  note(name: string, value: string): void {
    if (name === 'client_encoding') this.#client = value.toUpperCase();
    else if (name === 'server_encoding') this.#server = value.toUpperCase();
    else if (name === 'standard_conforming_strings') this.#conforming = value === 'on';
  }

  /** Why the session the server reports cannot be governed, or undefined. */
  refusal(): string | undefined {
    if (!this.#conforming)
      return 'Airlock requires standard_conforming_strings on: it reads SQL text as the server does only then';
    const client = this.#client;
    if (unsafeClientEncodings.has(client))
      return `Airlock does not support client_encoding ${client}: its multibyte characters hold ASCII bytes, so the enforcer would read SQL text otherwise than the server`;
    if (
      client === 'UTF8' ||
      this.#server === 'SQL_ASCII' ||
      (client === 'SQL_ASCII' && this.#server === 'UTF8')
    )
      return undefined;
    return `Airlock reads SQL text as UTF-8: with client_encoding ${client} on a ${this.#server} database the server would read names and values otherwise; use client_encoding UTF8`;
  }
}

/**
 * Reads the startup `options` string as the server does (`-c name=value`, `--name=value`,
 * backslash escapes) and rebuilds it from its settings. Other switches (`-d 5`, `-F`, …) set
 * server options an agent has no use for: refused.
 */
export function filterOptions(options: string): { options: string; refused?: string } {
  const tokens: string[] = [];
  let current = '';
  let escaped = false;
  let inToken = false;
  for (const ch of options) {
    if (escaped) {
      current += ch;
      escaped = false;
      inToken = true;
    } else if (ch === '\\') {
      escaped = true;
    } else if (/\s/.test(ch)) {
      if (inToken) tokens.push(current);
      current = '';
      inToken = false;
    } else {
      current += ch;
      inToken = true;
    }
  }
  if (inToken) tokens.push(current);
  const kept: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    let setting: string | undefined;
    if (token === '-c') setting = tokens[++i];
    else if (token.startsWith('-c')) setting = token.slice(2);
    else if (token.startsWith('--')) setting = token.slice(2);
    const eq = setting?.indexOf('=') ?? -1;
    if (setting === undefined || eq <= 0)
      return {
        options: '',
        refused: `Airlock forwards only -c name=value and --name=value in options, not ${JSON.stringify(token)}`,
      };
    const name = setting.slice(0, eq).replaceAll('-', '_');
    const refused = settingRefusal(name, setting.slice(eq + 1));
    if (refused) return { options: '', refused };
    kept.push(`-c ${setting.replaceAll('\\', '\\\\').replaceAll(' ', '\\ ')}`);
  }
  return { options: kept.join(' ') };
}
