// Where the CLI writes, and how it looks there: tables with headers and colour for a person
// at a terminal; plain lines (stable for grep) when piped; --json for programs. Colour
// follows NO_COLOR (https://no-color.org) and is off when the stream is not a terminal.
// A closed stdout (`tessera status | head -1`: EPIPE) ends output quietly: no stack trace.

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** stdout is a terminal: tables with headers. */
  readonly tty?: boolean;
  /** colour on stdout. */
  readonly color?: boolean;
  /** Run `fn` when stdout is closed by its reader (EPIPE): a follower stops. */
  onClosed?(fn: () => void): void;
}

/** Colour for a stream: a terminal, NO_COLOR unset or empty, TERM not "dumb". */
export function colorFor(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  return !!stream.isTTY && !env.NO_COLOR && env.TERM !== 'dumb';
}

/** The process's stdout/stderr, with EPIPE on stdout turned into a quiet end of output. */
export function processIo(): CliIo {
  let closed = false;
  const onClosed: (() => void)[] = [];
  const close = (): void => {
    if (closed) return;
    closed = true;
    for (const fn of onClosed.splice(0)) fn();
  };
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    // EPIPE: the reader is gone (head, a closed pager); nothing to say. Other errors: one line.
    if (err.code !== 'EPIPE') process.stderr.write(`tessera: cannot write to stdout: ${err.message} [TESSERA_ERR_FILESYSTEM]\n`);
    close();
  });
  return {
    out: (l) => {
      if (!closed) process.stdout.write(l + '\n');
    },
    err: (l) => process.stderr.write(l + '\n'),
    tty: !!process.stdout.isTTY,
    color: colorFor(process.stdout),
    onClosed: (fn) => {
      if (closed) fn();
      else onClosed.push(fn);
    },
  };
}

const CODES = { red: 31, green: 32, yellow: 33, bold: 1, dim: 2 } as const;
export type Style = keyof typeof CODES;

export function paint(on: boolean | undefined, style: Style, text: string): string {
  return on ? `\x1b[${CODES[style]}m${text}\x1b[0m` : text;
}

const ANSI = /\x1b\[[0-9;]*m/g;
const visible = (s: string): number => s.replace(ANSI, '').length;

/** Columns aligned under a header; the last column is not padded. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], color?: boolean): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i]! - visible(c))))
      .join('  ')
      .trimEnd();
  return [paint(color, 'bold', line(header)), ...rows.map(line)];
}

/** One row with fixed column widths (a follower cannot know the widths of rows to come). */
export function fixedRow(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(Math.max(0, (widths[i] ?? 0) - visible(c)))))
    .join('  ')
    .trimEnd();
}

/** "1h 2m 3s" */
export function humanDuration(seconds: number): string {
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.floor(seconds % 60);
  const parts = [d && `${d}d`, h && `${h}h`, m && `${m}m`, (s || seconds < 60) && `${s}s`].filter(Boolean);
  return parts.slice(0, 2).join(' ');
}
