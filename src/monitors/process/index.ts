export { listeningPorts, listeningSockets, type ListenerDump } from './listeners.js';
