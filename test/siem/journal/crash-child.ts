// Appends forever, printing each acknowledged range; the parent kills it with SIGKILL.
import { openJournal } from "../../../engine/siem/journal/index.js";

const journal = openJournal(process.argv[2]!, { groupMs: 1 });
let n = 0;
async function writer(w: number): Promise<void> {
  for (;;) {
    const batch = Array.from({ length: 1 + (n % 7) }, () => {
      n++;
      return { index: "viw-other", event: { event_id: `w${w}-${n}`, timestamp: new Date().toISOString(), received_at: new Date().toISOString(), pad: "x".repeat(200) } };
    });
    const r = await journal.append(batch);
    process.stdout.write(`${r.first} ${r.last} ${batch[0]!.event.event_id} ${batch[batch.length - 1]!.event.event_id}\n`);
  }
}
for (let w = 0; w < 4; w++) void writer(w);
