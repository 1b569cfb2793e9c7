#if canImport(Glibc)
    import Glibc
#endif

/// SIGTERM (what Slurm, Kubernetes and `scancel` send first), SIGINT (Ctrl-C) and SIGUSR1 (what
/// `mpirun` forwards to every rank, and `#SBATCH --signal` can send ahead of the time limit) ask
/// a training run to stop: the handler only notes the signal; the trainer finishes the step it
/// is in, the ranks agree (any rank's signal counts, through the step's own allreduce), rank 0
/// writes a checkpoint, and every rank exits with `exitStatus`. A second signal changes nothing,
/// and a checkpoint is written atomically whatever happens to the process.
public enum StopSignal {
    /// The exit status of a run that stopped on a signal after writing its checkpoint: 75,
    /// EX_TEMPFAIL of sysexits.h ("try again later"), so that a launcher can tell "resume me"
    /// from 0 (finished) and 1 (failed).
    public static let exitStatus: Int32 = 75

    /// The last signal received (0: none). A buffer allocated before any handler is installed, so
    /// the handler only stores into memory.
    nonisolated(unsafe) static let received: UnsafeMutablePointer<Int32> = {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// Installs the handlers (once per process; again is harmless). Also ignores SIGXFSZ, so that
    /// a file-size limit makes a write fail with an error instead of killing the process.
    public static func install() {
        _ = received
        for signo in [SIGTERM, SIGINT, SIGUSR1] {
            signal(signo) { StopSignal.received.pointee = $0 }
        }
        signal(SIGXFSZ, SIG_IGN)
    }

    /// The signal received so far, or 0.
    public static var pending: Int32 { received.pointee }

    /// The signal's name, for the log.
    public static func name(_ signo: Int32) -> String {
        switch signo {
        case SIGTERM: "SIGTERM"
        case SIGINT: "SIGINT"
        case SIGUSR1: "SIGUSR1"
        default: "signal \(signo)"
        }
    }
}
