// TensorBoard's plugin host protocol (tensorboard/components/experimental/plugin_util):
// the iframe sends "experimental.bootstrap" with a MessagePort to its parent, and
// TensorBoard then broadcasts JSON messages such as "experimental.DataReloaded" (sent when
// TensorBoard reloads, by its refresh button or its own timer). Every message expects a reply.

interface HostMessage {
  type: string;
  id: number;
  payload: unknown;
  error: unknown;
  isReply: boolean;
}

export function listenToTensorBoard(onDataReloaded: () => void): void {
  if (window.parent === window) return;
  let channel: MessageChannel;
  try {
    channel = new MessageChannel();
  } catch {
    return;
  }
  const port = channel.port1;
  port.onmessage = (event: MessageEvent) => {
    let msg: HostMessage;
    try {
      msg = JSON.parse(String(event.data)) as HostMessage;
    } catch {
      return;
    }
    if (!msg || msg.isReply) return;
    if (msg.type === "experimental.DataReloaded") onDataReloaded();
    const reply: HostMessage = { type: msg.type, id: msg.id, payload: null, error: null, isReply: true };
    port.postMessage(JSON.stringify(reply));
  };
  try {
    window.parent.postMessage("experimental.bootstrap", window.location.origin, [channel.port2]);
  } catch {
    // Not same-origin with a TensorBoard page (e.g. opened on its own): nothing to listen to.
  }
}
