// Command classes: what one command is by its own name and arguments (file-deletion, privilege,
// network), not by what it runs.
import type { SshCommandClass } from '../../../api/names.ts';

const fileDeletion = new Set([
  'rm',
  'rmdir',
  'unlink',
  'shred',
  'srm',
  'wipe',
  'wipefs',
  'blkdiscard',
  'truncate',
]);
const privilege = new Set([
  'sudo',
  'su',
  'doas',
  'pkexec',
  'runuser',
  'setpriv',
  'sg',
  'newgrp',
  'chroot',
  'nsenter',
  'unshare',
  'setcap',
  'capsh',
  'chown',
  'chgrp',
  'passwd',
  'chpasswd',
  'usermod',
  'useradd',
  'userdel',
  'groupadd',
  'groupmod',
  'gpasswd',
  'visudo',
  'sudoedit',
]);
const network = new Set([
  'curl',
  'wget',
  'nc',
  'ncat',
  'netcat',
  'socat',
  'ssh',
  'scp',
  'sftp',
  'telnet',
  'ftp',
  'lftp',
  'tftp',
  'aria2c',
  'http',
  'https',
  'nmap',
  'openssl',
  'dig',
  'nslookup',
  'host',
  'ssh-keyscan',
  'rclone',
  'smbclient',
]);

/** The classes of one command (its own, not those of what it runs). */
export function classify(argv: string[]): SshCommandClass[] {
  const name = argv[0]!;
  const args = argv.slice(1);
  const classes: SshCommandClass[] = [];
  const deletes =
    fileDeletion.has(name) ||
    /^mkfs(\..+)?$/.test(name) ||
    (name === 'find' && args.includes('-delete')) ||
    (name === 'rsync' && args.some((a) => /^--(delete|remove-source-files)/.test(a))) ||
    (name === 'tar' && args.some((a) => a === '--remove-files')) ||
    (name === 'git' && args.some((a) => a === 'clean' || a === 'rm')) ||
    (name === 'mv' && args.at(-1) === '/dev/null') ||
    (name === 'dd' && args.some((a) => a.startsWith('of='))) ||
    (name === 'zip' && args.some((a) => /^-[a-zA-Z]*m/.test(a) || a === '--move')) ||
    (name === 'crontab' && args.some((a) => /^-[a-zA-Z]*r/.test(a)));
  if (deletes) classes.push('file-deletion');
  const setuid =
    (name === 'chmod' || name === 'install') &&
    args.some(
      (a) =>
        /^[ugoa]*[+=][rwxXt]*s/.test(a) ||
        /^[0-7]?[2-7][0-7]{3}$/.test(a) ||
        /(^|,)[ugoa]*[+=][^,]*s/.test(a),
    );
  if (privilege.has(name) || setuid) classes.push('privilege');
  const remote =
    network.has(name) ||
    (name === 'rsync' && args.some((a) => /^[^/-][^/]*:/.test(a) || a.startsWith('rsync://'))) ||
    (name === 'git' &&
      args.some((a) => ['clone', 'fetch', 'pull', 'push', 'ls-remote', 'remote'].includes(a))) ||
    args.some((a) => /^\/dev\/(tcp|udp)\//.test(a));
  if (remote) classes.push('network');
  return classes;
}
