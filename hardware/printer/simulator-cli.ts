import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { PrinterSimulator, type SimulatorState } from './simulator.ts';

const states: SimulatorState[] = ['ready', 'paper-out', 'cover-open', 'offline'];

function integer(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    return n;
  };
}

function oneOf<T extends string>(allowed: readonly T[]) {
  return (value: string): T => {
    if (!(allowed as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${allowed.join(', ')}`);
    return value as T;
  };
}

const program = new Command()
  .name('printer-simulator')
  .description(
    'A network receipt printer that decodes ESC/POS instead of printing it.\n' +
      'Type ready, paper-out, cover-open or offline and Enter to change its state;\n' +
      'type close to push the cash drawer shut, open to open it by hand.',
  )
  .option('--port <port>', 'TCP port to listen on', integer(0, 65535), 9100)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--out <file>', 'append each printed receipt to this file instead of the console')
  .option('--emulation <kind>', 'command set: epson or star', oneOf(['epson', 'star'] as const), 'epson')
  .option('--columns <n>', 'paper width in characters, for the readable output', integer(16, 80), 48)
  .option('--state <state>', `initial state: ${states.join(', ')}`, oneOf(states), 'ready')
  .option('--drawer-close-after <ms>', 'the cash drawer closes this long after a kick; 0 keeps it open until "close"', integer(0, 3_600_000), 4000)
  .parse();

const opts = program.opts<{ port: number; host: string; out?: string; emulation: 'epson' | 'star'; columns: number; state: SimulatorState; drawerCloseAfter: number }>();

const simulator = new PrinterSimulator({
  port: opts.port,
  host: opts.host,
  emulation: opts.emulation,
  columns: opts.columns,
  drawerCloseAfterMs: opts.drawerCloseAfter,
  ...(opts.out ? { outFile: opts.out } : { outStream: process.stdout }),
});
simulator.setState(opts.state);

try {
  await simulator.start();
} catch (err) {
  console.error(`printer-simulator: cannot listen on ${opts.host}:${opts.port}: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
console.error(`printer-simulator: ${opts.emulation} printer on ${simulator.url}, state ${simulator.getState()}`);

simulator.onDrawerKick((k) => console.error(`printer-simulator: drawer kick on pin ${k.pin} (${k.onMs} ms on, ${k.offMs} ms off): drawer open`));

const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  const wanted = line.trim();
  if (wanted === '') return;
  if (wanted === 'close' || wanted === 'open') {
    if (wanted === 'close') simulator.closeDrawer();
    else simulator.openDrawerByHand();
    console.error(`printer-simulator: drawer ${wanted === 'close' ? 'closed' : 'open'}`);
  } else if ((states as string[]).includes(wanted)) {
    simulator.setState(wanted as SimulatorState);
    console.error(`printer-simulator: state ${wanted}`);
  } else {
    console.error(`printer-simulator: unknown command "${wanted}"; use ${states.join(', ')}, close or open`);
  }
});

const shutdown = (): void => {
  input.close();
  void simulator.stop().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
