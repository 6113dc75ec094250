export { listeningPorts, listeningSockets } from './listeners.js';
