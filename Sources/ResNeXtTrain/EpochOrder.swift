import ResNeXt

/// The order of the training set in each epoch: one seeded permutation per epoch (or file order),
/// cut into batches of `batchSize` consecutive entries; the last partial batch is dropped.
public struct EpochOrder: Sendable {
    public let count: Int
    public let batchSize: Int
    public let shuffle: Bool
    public let seed: UInt64

    public init(count: Int, batchSize: Int, shuffle: Bool, seed: UInt64) {
        self.count = count; self.batchSize = batchSize; self.shuffle = shuffle; self.seed = seed
    }

    public var batchesPerEpoch: Int { count / batchSize }

    public func permutation(epoch: Int) -> [Int] {
        var order = Array(0..<count)
        guard shuffle else { return order }
        var rng = SplitMix64(seed: seed, UInt64(epoch), UInt64.max)
        for i in stride(from: count - 1, to: 0, by: -1) {
            order.swapAt(i, rng.nextInt(below: i + 1))
        }
        return order
    }
}
