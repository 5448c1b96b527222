// node:http's createServer, loaded without the ESM facade: importing
// node:http from an ES module reads every export, and its lazy WebSocket /
// EventSource getters then load Node's bundled undici, ~10 MB of resident
// memory in every agent and ztunnel that serves an admin API.
export const { createServer } = process.getBuiltinModule('node:http');
