// Leader election on a coordination.k8s.io Lease, so two replicas never both reconcile or
// write certificates. The timings are client-go's: a 15 s lease, renewed every 2 s, given up
// when it could not be renewed for 10 s. Expiry is judged by when this replica last saw the
// record change, not by the holder's clock. On a clean stop the holder releases the lease,
// so another replica takes over within one retry period.
import { type CoordinationV1Api, type V1Lease, V1MicroTime } from '@kubernetes/client-node';
import { statusCode } from './kube.ts';

export interface LeaderElectionOptions {
  coordination: CoordinationV1Api;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  onError?: (error: unknown) => void;
}

export class LeaderElector {
  readonly #options: Required<
    Omit<LeaderElectionOptions, 'onStartedLeading' | 'onStoppedLeading' | 'onError'>
  > &
    LeaderElectionOptions;
  #leader = false;
  #stopped = false;
  #timer?: NodeJS.Timeout;
  #lastRenewal = 0;
  /** The record as last seen, and when it was last seen to change. */
  #observed?: { holder: string; renewTime: string; at: number };

  constructor(options: LeaderElectionOptions) {
    this.#options = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000, ...options };
  }

  get isLeader(): boolean {
    return this.#leader;
  }

  start(): void {
    const tick = async () => {
      if (this.#stopped) return;
      await this.#tryAcquireOrRenew();
      if (!this.#stopped) this.#timer = setTimeout(tick, this.#options.retryPeriodMs);
    };
    void tick();
  }

  /** Stops campaigning; a leader releases the lease so a peer can take over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (!this.#leader) return;
    this.#setLeader(false);
    try {
      const lease = await this.#read();
      if (lease?.spec?.holderIdentity === this.#options.identity) {
        lease.spec.holderIdentity = '';
        lease.spec.leaseDurationSeconds = 1;
        await this.#options.coordination.replaceNamespacedLease({
          name: this.#options.name,
          namespace: this.#options.namespace,
          body: lease,
        });
      }
    } catch (error) {
      this.#options.onError?.(error);
    }
  }

  async #read(): Promise<V1Lease | undefined> {
    try {
      return await this.#options.coordination.readNamespacedLease({
        name: this.#options.name,
        namespace: this.#options.namespace,
      });
    } catch (error) {
      if (statusCode(error) === 404) return undefined;
      throw error;
    }
  }

  #setLeader(leader: boolean) {
    if (leader === this.#leader) return;
    this.#leader = leader;
    if (leader) this.#options.onStartedLeading?.();
    else this.#options.onStoppedLeading?.();
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { coordination, namespace, name, identity } = this.#options;
    const now = Date.now();
    try {
      const lease = await this.#read();
      const spec = {
        holderIdentity: identity,
        leaseDurationSeconds: Math.ceil(this.#options.leaseDurationMs / 1000),
        renewTime: new V1MicroTime(now),
      };
      if (!lease) {
        await coordination.createNamespacedLease({
          namespace,
          body: {
            metadata: { name, namespace },
            spec: { ...spec, acquireTime: new V1MicroTime(now), leaseTransitions: 0 },
          },
        });
        this.#renewed(now);
        return;
      }
      const holder = lease.spec?.holderIdentity ?? '';
      const renewTime = String(lease.spec?.renewTime?.toISOString?.() ?? lease.spec?.renewTime ?? '');
      if (!this.#observed || this.#observed.holder !== holder || this.#observed.renewTime !== renewTime) {
        this.#observed = { holder, renewTime, at: now };
      }
      const durationMs = (lease.spec?.leaseDurationSeconds ?? 15) * 1000;
      const expired = holder === '' || this.#observed.at + durationMs < now;
      if (holder !== identity && !expired) {
        this.#setLeader(false);
        return;
      }
      lease.spec = {
        ...lease.spec,
        ...spec,
        ...(holder !== identity && {
          acquireTime: new V1MicroTime(now),
          leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1,
        }),
      };
      // replace carries the resourceVersion read above: a peer that wrote first wins, we retry.
      await coordination.replaceNamespacedLease({ name, namespace, body: lease });
      this.#renewed(now);
    } catch (error) {
      if (statusCode(error) !== 409) this.#options.onError?.(error);
      if (this.#leader && now - this.#lastRenewal > this.#options.renewDeadlineMs) this.#setLeader(false);
    }
  }

  #renewed(now: number) {
    this.#lastRenewal = now;
    this.#setLeader(true);
  }
}
