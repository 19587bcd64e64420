// node:http and node:https for the data path's processes, taken without an ES module import:
// importing either as an ES module builds its namespace from every export, and node:http's
// WebSocket, CloseEvent and MessageEvent getters then load Node's own fetch implementation (20
// modules; 2-3 MB of the sidecar's RSS) into a process that never uses it. Types still come from
// `import type … from 'node:http'`, which loads nothing.
export const http = process.getBuiltinModule('node:http');
export const https = process.getBuiltinModule('node:https');
