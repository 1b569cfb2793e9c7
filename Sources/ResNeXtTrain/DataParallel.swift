import ResNeXt

/// The data-parallel training step, shared by `train` and `bench`.
public enum DataParallel {
    /// Zero the gradients; forward and backward this process's n images (its shard of a global
    /// batch, loss divided by the global batch) while `reducer` sums the finished gradients over
    /// the ranks in buckets; sum the BN batch statistics; move the running statistics; take the
    /// SGD step. Returns this process's share of the loss, its correct predictions, and the
    /// seconds the step waited for communication after the backward pass (after a barrier when
    /// `timeAllreduce`, so that waiting for a slower rank is not counted).
    @discardableResult
    public static func step(
        _ net: ResNeXt<Float>, images: UnsafePointer<Float>, labels: UnsafePointer<Int32>, n: Int,
        globalBatch: Int, bnGroup: Int, optimizer: SGD, reducer: GradientReducer,
        timeAllreduce: Bool = false
    ) -> (loss: Double, correct: Int, allreduceSeconds: Double) {
        let store = net.store, comm = reducer.comm
        var seconds = 0.0
        reducer.begin()
        let result = net.trainStep(
            images: images, labels: labels, n: n, bnGroup: bnGroup, optimizer: optimizer,
            globalBatch: globalBatch,
            beforeUpdate: {
                if timeAllreduce && comm.size > 1 { Profile.measure(.imbalance) { comm.barrier() } }
                let t0 = Profile.now()
                Profile.measure(.communication) {
                    reducer.finish()
                    comm.allreduceSum(store.batchStats.base, count: store.batchStats.count)
                }
                seconds = Profile.now() - t0
            }, gradientsReady: { reducer.ready($0) })
        return (result.loss, result.correct, seconds)
    }
}
