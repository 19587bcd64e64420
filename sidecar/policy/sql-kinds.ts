// Statement classification: the kind and classes of each statement node type of PostgreSQL's
// parse tree, and the settings and object types whose statements are classed by what they touch.
import type { SqlClass, SqlStatementKind } from '../../api/names.ts';
import type { AstObject } from './sql-tree.ts';

type Classified = { kind: SqlStatementKind; classes: SqlClass[] };
const c = (kind: SqlStatementKind, ...classes: SqlClass[]): Classified => ({ kind, classes });

/** Statement node types whose kind and classes do not depend on their fields. */
const fixedKinds: Record<string, Classified> = {
  InsertStmt: c('INSERT', 'write'),
  UpdateStmt: c('UPDATE', 'write'),
  DeleteStmt: c('DELETE', 'write'),
  MergeStmt: c('MERGE', 'write'),
  TruncateStmt: c('TRUNCATE', 'write', 'ddl'),
  // Procedures may write anything; their bodies are not visible here.
  CallStmt: c('CALL', 'write'),
  DoStmt: c('DO', 'admin'),
  CommentStmt: c('COMMENT', 'ddl'),
  SecLabelStmt: c('SECURITY LABEL', 'dcl'),
  ReassignOwnedStmt: c('REASSIGN', 'dcl'),
  ImportForeignSchemaStmt: c('IMPORT', 'ddl'),
  VariableShowStmt: c('SHOW', 'read'),
  ExecuteStmt: c('EXECUTE'),
  DeallocateStmt: c('DEALLOCATE'),
  PrepareStmt: c('PREPARE'),
  // Strong lock modes stall production as surely as a write.
  LockStmt: c('LOCK', 'write'),
  ClusterStmt: c('CLUSTER', 'admin'),
  ReindexStmt: c('REINDEX', 'admin'),
  CheckPointStmt: c('CHECKPOINT', 'admin'),
  RefreshMatViewStmt: c('REFRESH', 'write'),
  ListenStmt: c('LISTEN'),
  UnlistenStmt: c('UNLISTEN'),
  NotifyStmt: c('NOTIFY'),
  DiscardStmt: c('DISCARD'),
  DeclareCursorStmt: c('DECLARE', 'read'),
  ClosePortalStmt: c('CLOSE'),
  LoadStmt: c('LOAD', 'admin'),
  ConstraintsSetStmt: c('SET'),
  // CREATE
  CreateStmt: c('CREATE', 'ddl'),
  CreateSchemaStmt: c('CREATE', 'ddl'),
  CreateSeqStmt: c('CREATE', 'ddl'),
  CreateDomainStmt: c('CREATE', 'ddl'),
  CompositeTypeStmt: c('CREATE', 'ddl'),
  CreateEnumStmt: c('CREATE', 'ddl'),
  CreateRangeStmt: c('CREATE', 'ddl'),
  DefineStmt: c('CREATE', 'ddl'),
  ViewStmt: c('CREATE', 'ddl'),
  IndexStmt: c('CREATE', 'ddl'),
  RuleStmt: c('CREATE', 'ddl'),
  CreateTrigStmt: c('CREATE', 'ddl'),
  CreateStatsStmt: c('CREATE', 'ddl'),
  CreateCastStmt: c('CREATE', 'ddl'),
  CreateConversionStmt: c('CREATE', 'ddl'),
  CreateOpClassStmt: c('CREATE', 'ddl'),
  CreateOpFamilyStmt: c('CREATE', 'ddl'),
  CreateTransformStmt: c('CREATE', 'ddl'),
  CreatedbStmt: c('CREATE', 'ddl'),
  CreatePublicationStmt: c('CREATE', 'ddl'),
  CreateForeignTableStmt: c('CREATE', 'ddl'),
  CreateFunctionStmt: c('CREATE', 'ddl', 'admin'),
  CreateExtensionStmt: c('CREATE', 'ddl', 'admin'),
  CreateEventTrigStmt: c('CREATE', 'ddl', 'admin'),
  CreatePLangStmt: c('CREATE', 'ddl', 'admin'),
  CreateAmStmt: c('CREATE', 'ddl', 'admin'),
  CreateFdwStmt: c('CREATE', 'ddl', 'admin'),
  CreateForeignServerStmt: c('CREATE', 'ddl', 'admin'),
  CreateUserMappingStmt: c('CREATE', 'dcl', 'admin'),
  CreateSubscriptionStmt: c('CREATE', 'ddl', 'admin'),
  CreateTableSpaceStmt: c('CREATE', 'ddl', 'admin'),
  CreateRoleStmt: c('CREATE', 'dcl'),
  CreatePolicyStmt: c('CREATE', 'ddl', 'dcl'),
  // ALTER
  AlterTableStmt: c('ALTER', 'ddl'),
  AlterTableMoveAllStmt: c('ALTER', 'ddl'),
  ReplicaIdentityStmt: c('ALTER', 'ddl'),
  AlterCollationStmt: c('ALTER', 'ddl'),
  AlterDomainStmt: c('ALTER', 'ddl'),
  AlterSeqStmt: c('ALTER', 'ddl'),
  AlterEnumStmt: c('ALTER', 'ddl'),
  AlterTypeStmt: c('ALTER', 'ddl'),
  AlterOperatorStmt: c('ALTER', 'ddl'),
  AlterOpFamilyStmt: c('ALTER', 'ddl'),
  AlterStatsStmt: c('ALTER', 'ddl'),
  AlterObjectDependsStmt: c('ALTER', 'ddl'),
  AlterObjectSchemaStmt: c('ALTER', 'ddl'),
  AlterTSDictionaryStmt: c('ALTER', 'ddl'),
  AlterTSConfigurationStmt: c('ALTER', 'ddl'),
  AlterDatabaseStmt: c('ALTER', 'ddl'),
  AlterDatabaseRefreshCollStmt: c('ALTER', 'ddl'),
  AlterPublicationStmt: c('ALTER', 'ddl'),
  AlterForeignServerStmt: c('ALTER', 'ddl', 'admin'),
  AlterFdwStmt: c('ALTER', 'ddl', 'admin'),
  AlterUserMappingStmt: c('ALTER', 'dcl', 'admin'),
  AlterSubscriptionStmt: c('ALTER', 'ddl', 'admin'),
  AlterTableSpaceOptionsStmt: c('ALTER', 'ddl', 'admin'),
  AlterExtensionStmt: c('ALTER', 'ddl', 'admin'),
  AlterExtensionContentsStmt: c('ALTER', 'ddl', 'admin'),
  AlterEventTrigStmt: c('ALTER', 'ddl', 'admin'),
  AlterFunctionStmt: c('ALTER', 'ddl', 'admin'),
  AlterDatabaseSetStmt: c('ALTER', 'ddl', 'admin'),
  AlterSystemStmt: c('ALTER', 'admin'),
  RenameStmt: c('ALTER', 'ddl'),
  AlterOwnerStmt: c('ALTER', 'ddl', 'dcl'),
  AlterPolicyStmt: c('ALTER', 'ddl', 'dcl'),
  AlterDefaultPrivilegesStmt: c('ALTER', 'dcl'),
  AlterRoleStmt: c('ALTER', 'dcl'),
  AlterRoleSetStmt: c('ALTER', 'dcl', 'admin'),
  // DROP
  DropStmt: c('DROP', 'ddl'),
  DropdbStmt: c('DROP', 'ddl'),
  DropTableSpaceStmt: c('DROP', 'ddl', 'admin'),
  DropUserMappingStmt: c('DROP', 'dcl', 'admin'),
  DropSubscriptionStmt: c('DROP', 'ddl', 'admin'),
  DropRoleStmt: c('DROP', 'dcl'),
  DropOwnedStmt: c('DROP', 'ddl', 'dcl'),
};

/** Settings that change who the session is, or switch off triggers and rules. */
export const identitySettings = new Set(['role', 'session_authorization', 'session_replication_role']);

export const relationObjectTypes = new Set([
  'OBJECT_TABLE',
  'OBJECT_VIEW',
  'OBJECT_MATVIEW',
  'OBJECT_FOREIGN_TABLE',
]);

/** What a MERGE arm does, by its command type. */
export const armKinds: Record<string, SqlStatementKind> = {
  CMD_UPDATE: 'UPDATE',
  CMD_DELETE: 'DELETE',
  CMD_INSERT: 'INSERT',
};

const transactionKinds: Record<string, Classified> = {
  TRANS_STMT_BEGIN: c('BEGIN'),
  TRANS_STMT_START: c('BEGIN'),
  TRANS_STMT_COMMIT: c('COMMIT'),
  TRANS_STMT_ROLLBACK: c('ROLLBACK'),
  TRANS_STMT_SAVEPOINT: c('SAVEPOINT'),
  TRANS_STMT_RELEASE: c('SAVEPOINT'),
  TRANS_STMT_ROLLBACK_TO: c('ROLLBACK'),
  // Two-phase commit leaves transactions (and their locks) behind the session.
  TRANS_STMT_PREPARE: c('COMMIT', 'admin'),
  TRANS_STMT_COMMIT_PREPARED: c('COMMIT', 'admin'),
  TRANS_STMT_ROLLBACK_PREPARED: c('ROLLBACK', 'admin'),
};

export function classify(type: string, body: AstObject): Classified {
  const fixed = fixedKinds[type];
  if (fixed) return fixed;
  switch (type) {
    case 'SelectStmt':
      return body['intoClause'] ? c('SELECT', 'read', 'write', 'ddl') : c('SELECT', 'read');
    case 'CreateTableAsStmt':
      return c('CREATE', 'write', 'ddl');
    case 'ExplainStmt':
      return c('EXPLAIN', 'read');
    case 'CopyStmt': {
      const classes: SqlClass[] = [body['is_from'] ? 'write' : 'read'];
      // PROGRAM runs a shell command; a file name reads or writes the server's filesystem.
      if (body['is_program'] || typeof body['filename'] === 'string') classes.push('admin');
      return { kind: 'COPY', classes };
    }
    case 'VariableSetStmt': {
      const kind = body['kind'] === 'VAR_RESET' || body['kind'] === 'VAR_RESET_ALL' ? 'RESET' : 'SET';
      const name = typeof body['name'] === 'string' ? body['name'].toLowerCase() : '';
      return identitySettings.has(name) ? c(kind, 'admin') : c(kind);
    }
    case 'TransactionStmt':
      return transactionKinds[String(body['kind'])] ?? c('BEGIN');
    case 'GrantStmt':
    case 'GrantRoleStmt':
      return body['is_grant'] ? c('GRANT', 'dcl') : c('REVOKE', 'dcl');
    case 'VacuumStmt':
      return body['is_vacuumcmd'] ? c('VACUUM', 'admin') : c('ANALYZE', 'admin');
    case 'FetchStmt':
      return body['ismove'] ? c('FETCH') : c('FETCH', 'read');
    default:
      throw new Error(`unsupported statement type ${type}`);
  }
}
